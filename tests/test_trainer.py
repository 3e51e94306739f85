"""The training loop and its callbacks, on a small VAE without the estimator."""

import math

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.data.batches import BatchIterator
from cvae.data.rows import TensorChunks
from cvae.nn import VAE
from cvae.nn.vae import LossSettings
from cvae.training import Callback, Trainer, TrainerConfig
from cvae.training.callbacks import Checkpoint, EarlyStopping, LearningRatePlateau, NonFiniteRollback
from cvae.training.trainer import evaluate, make_adam


@pytest.fixture
def parts():
    torch.manual_seed(0)
    X = torch.randn(96, 6)
    model = VAE(6, 2, [8], torch.zeros(6), torch.ones(6))
    return model, BatchIterator(X[:64], 16, seed=0), TensorChunks(X[64:], 32)


def make_trainer(parts, callbacks=(), max_steps=20, validation_interval=5, **config):
    model, batches, chunks = parts
    config = TrainerConfig(max_steps=max_steps, validation_interval=validation_interval, **config)
    return Trainer(model, make_adam(model.parameters(), 1e-2), batches, chunks, LossSettings(), config, callbacks)


class Recorder(Callback):
    def __init__(self, log, name="recorder"):
        self.log, self.name = log, name

    def on_train_begin(self, trainer):
        self.log.append((self.name, "begin", trainer.step))

    def on_step_end(self, trainer):
        self.log.append((self.name, "step", trainer.step))

    def on_validation_end(self, trainer, row):
        self.log.append((self.name, "validation", row["step"]))

    def on_train_end(self, trainer):
        self.log.append((self.name, "end", trainer.step))


def test_hooks_run_in_order_at_their_moments(parts):
    log = []
    trainer = make_trainer(parts, [Recorder(log, "a"), Recorder(log, "b")], max_steps=10)
    assert trainer.run() == "max_steps"
    assert log[:2] == [("a", "begin", 0), ("b", "begin", 0)]
    assert log[-2:] == [("a", "end", 10), ("b", "end", 10)]
    validations = [entry for entry in log if entry[1] == "validation"]
    assert validations == [("a", "validation", 5), ("b", "validation", 5), ("a", "validation", 10),
                           ("b", "validation", 10)]
    # a validation step's callbacks come before that step's on_step_end
    assert log.index(("b", "validation", 5)) < log.index(("a", "step", 5))
    assert [step for name, hook, step in log if name == "a" and hook == "step"] == list(range(1, 11))


def test_a_callback_stops_the_run_with_its_reason(parts):
    class StopAtSecondValidation(Callback):
        def on_validation_end(self, trainer, row):
            if len(trainer.history) == 2:
                trainer.stop("enough")

    trainer = make_trainer(parts, [StopAtSecondValidation()], max_steps=100)
    assert trainer.run() == "enough"
    assert trainer.step == 10 and [row["step"] for row in trainer.history] == [5, 10]


def test_request_stop_ends_the_run_as_interrupted(parts):
    class Interrupt(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 3:
                trainer.request_stop()

    trainer = make_trainer(parts, [Interrupt()], max_steps=100)
    assert trainer.run() == "interrupted" and trainer.step == 3
    # the steps since the last validation are validated, so the best weights include them
    assert [row["step"] for row in trainer.history] == [3] and math.isfinite(trainer.best_loss)


def test_best_weights_are_those_of_the_lowest_validation_loss(parts):
    best = {}

    class Snapshot(Callback):
        def on_validation_end(self, trainer, row):
            best[row["validation_loss"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer = make_trainer(parts, [Snapshot()], max_steps=40)
    trainer.run()
    lowest = min(row["validation_loss"] for row in trainer.history)
    assert trainer.best_loss == lowest
    for name, value in best[lowest].items():
        assert torch.equal(trainer.best_model[name], value)


def test_kl_warmup_ramps_beta_linearly(parts):
    trainer = make_trainer(parts, kl_warmup_steps=100)
    trainer.loss = LossSettings(beta=2.0)
    for step, expected in [(0, 0.02), (49, 1.0), (99, 2.0), (500, 2.0)]:
        trainer.step = step
        assert trainer._step_loss().beta == pytest.approx(expected)


def test_validation_ignores_free_bits_and_scores_every_rows_reconstruction(parts):
    model, _, chunks = parts
    plain = evaluate(model, chunks, LossSettings())
    assert evaluate(model, chunks, LossSettings(free_bits=100.0)) == plain
    assert evaluate(model, chunks, LossSettings(reconstruction_fraction=0.25)) == plain


def test_plateau_lowers_the_rate_and_stops_as_converged(parts):
    model = parts[0]
    trainer = make_trainer(parts)
    plateau = LearningRatePlateau(trainer.optimizer, factor=10.0, patience=0, tol=0.0, min_lr=1e-3)
    trainer.callbacks = [plateau]
    for loss in (5.0, 6.0):
        plateau.on_validation_end(trainer, {"validation_loss": loss})
    assert trainer.learning_rate == pytest.approx(1e-3) and trainer.stop_reason is None
    plateau.on_validation_end(trainer, {"validation_loss": 7.0})
    assert trainer.learning_rate == pytest.approx(1e-4) and trainer.stop_reason == "converged"
    assert next(model.parameters()).device.type == "cpu"


def test_plateau_ignores_non_finite_losses(parts):
    trainer = make_trainer(parts)
    plateau = LearningRatePlateau(trainer.optimizer, factor=10.0, patience=0, tol=0.0, min_lr=0.0)
    plateau.on_validation_end(trainer, {"validation_loss": 5.0})
    for _ in range(3):
        plateau.on_validation_end(trainer, {"validation_loss": math.nan})
    assert trainer.learning_rate == pytest.approx(1e-2)


def test_rollback_restores_the_best_weights_then_stops_as_diverged(parts):
    trainer = make_trainer(parts)
    rollback = NonFiniteRollback(max_rollbacks=2)
    best = {k: v.clone() for k, v in trainer.best_model.items()}
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    trainer.optimizer.state[next(trainer.model.parameters())] = {"step": 1}
    rollback.on_validation_end(trainer, {"validation_loss": math.inf})
    assert rollback.count == 1 and trainer.learning_rate == pytest.approx(1e-3)
    assert not trainer.optimizer.state and trainer.stop_reason is None
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, best[name])
    rollback.on_validation_end(trainer, {"validation_loss": math.nan})
    assert rollback.count == 2 and trainer.stop_reason is None
    rollback.on_validation_end(trainer, {"validation_loss": math.nan})
    assert trainer.stop_reason == "diverged"
    rollback.on_validation_end(trainer, {"validation_loss": 1.0})  # finite: nothing happens
    assert rollback.count == 2


def test_checkpoint_writes_every_interval(parts):
    written = []
    trainer = make_trainer(parts, [Checkpoint(lambda state: written.append(state["step"]), 4)], max_steps=10)
    trainer.run()
    assert written == [4, 8]


def test_state_round_trip_continues_exactly(parts):
    model, batches, chunks = parts
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def trainer(max_steps):
        fresh = (model, BatchIterator(batches.data, 16, seed=0), chunks)
        return make_trainer(fresh, [NonFiniteRollback()], max_steps=max_steps)

    torch.manual_seed(1)
    trainer(20).run()
    end_whole = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(start)
    torch.manual_seed(1)
    first = trainer(10)
    first.run()
    state = first.state_dict()
    assert state["callbacks"] == {"rollbacks": {"count": 0}}
    torch.manual_seed(123)  # the state carries the random state
    second = trainer(20)
    second.load_state_dict(state)
    second.run()
    assert second.step == 20 and [row["step"] for row in second.history] == [5, 10, 15, 20]
    for name, value in model.state_dict().items():
        assert torch.equal(value, end_whole[name]), name


def test_early_stopping_counts_validations_without_a_new_best(parts):
    trainer = make_trainer(parts)
    early = EarlyStopping(patience=2, tol=0.5)
    for loss, stale in [(10.0, 0), (9.0, 0), (8.8, 1), (math.nan, 2)]:  # 8.8 is within tol of 9.0
        early.on_validation_end(trainer, {"validation_loss": loss})
        assert early.stale == stale
    assert trainer.stop_reason == "no_improvement"
    again = EarlyStopping(patience=2)
    again.load_state_dict(early.state_dict())
    assert (again.best, again.stale) == (9.0, 2)


def test_cosine_decay_warms_up_then_follows_the_half_cosine(parts):
    from cvae.training.callbacks import CosineDecay

    rates = []

    class Rates(Callback):
        def on_step_end(self, trainer):
            rates.append(trainer.learning_rate)

    trainer = make_trainer(parts, max_steps=20)
    schedule = CosineDecay(trainer.optimizer, 1e-2, total_steps=20, warmup_steps=4, min_lr=1e-4)
    trainer.callbacks = [schedule, Rates()]
    assert trainer.run() == "max_steps"
    # the rate after step k is that of step k + 1
    assert rates[:3] == pytest.approx([2 * 1e-2 / 4, 3 * 1e-2 / 4, 1e-2])
    # the decay runs from the peak at step 5 to the floor at step 20, the last one taken
    assert schedule.rate(4) == pytest.approx(1e-2) and schedule.rate(19) == pytest.approx(1e-4)
    third = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * 5 / 15))
    assert schedule.rate(9) == pytest.approx(third)
    assert rates[-2] == pytest.approx(1e-4) and min(rates) == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))  # never rises after the warm-up


def test_cosine_learning_rate_reaches_its_floor_at_max_steps(digits):
    from cvae import CompressionVAE

    vae = CompressionVAE(learning_rate="cosine", learning_rate_init=2e-3, learning_rate_min=1e-5, max_steps=100,
                         validation_interval=25, hidden_layer_sizes=(16,), random_state=0).fit(digits[0][:300])
    rates = [row["learning_rate"] for row in vae.history_]
    assert vae.stop_reason_ == "max_steps" and rates[0] < 2e-3 and rates[-1] == pytest.approx(1e-5)
    assert rates == sorted(rates, reverse=True)


@pytest.mark.parametrize("n_rows, batch_size, learning_rate, neighbor_weight, expected", [
    # 40 passes with the neighbour term, 120 without, times sqrt(10,000 / rows) below 10,000 rows;
    # above, with the neighbour term, times (10,000 / rows) ** 0.15
    (1212, 512, "cosine", 0.4, 272),  # digits: 114.9 passes
    (900, 512, "cosine", 0.4, 235),  # a 1,000-row fit: 133.3 passes
    (1212, 512, "cosine", 0.0, 816),  # digits, plain: 344.7 passes
    (54000, 512, "cosine", 0.0, 12657),  # MNIST: ceil(120 * 54000 / 512)
    (54000, 512, "cosine", 0.4, 3276),  # with the neighbour term, 40 * 0.776 = 31.06 passes
    (20000, 512, "cosine", 0.4, 1409),  # 40 * 0.901 = 36.05 passes
    (10000, 512, "cosine", 0.4, 782),  # 40 passes at 10,000 rows
    (54000, 128, "constant", 0.0, 50000),  # 50,625 steps, above the ceiling
    (54000, 512, "adaptive", 0.4, 50000),  # the plateau rule ends the fit
])
def test_auto_step_budget_scales_with_the_training_rows(n_rows, batch_size, learning_rate, neighbor_weight, expected):
    from cvae.training.run import step_budget

    params = {"max_steps": "auto", "batch_size": batch_size, "learning_rate": learning_rate,
              "neighbor_weight": neighbor_weight}
    assert step_budget(params, n_rows) == expected
    assert step_budget(dict(params, max_steps=7), n_rows) == 7


def test_a_fit_schedules_its_cosine_over_the_auto_budget(digits):
    from cvae import CompressionVAE
    from cvae.training.callbacks import CosineDecay

    vae = CompressionVAE(hidden_layer_sizes=(16,), batch_size=64, validation_interval=5, n_iter_no_change=1,
                         random_state=0).fit(digits[0][:300])
    assert vae.get_params()["max_steps"] == "auto" and vae.stop_reason_ == "no_improvement"
    # 270 training rows, with the neighbour term: 243.4 passes at batch 64 are 1,027 steps
    assert vae.max_steps_ == 1027 and vae.neighbor_weight_ == 0.4
    first = vae.history_[0]
    assert first["step"] == 5
    assert first["learning_rate"] == pytest.approx(CosineDecay(None, 3e-3, 1027, 51, 1e-5).rate(4))
    assert first["learning_rate"] != pytest.approx(CosineDecay(None, 3e-3, 3000, 150, 1e-5).rate(4))


def test_history_logs_the_elbo_apart_from_the_neighbour_term(X, fast):
    from cvae import CompressionVAE

    plain = CompressionVAE(neighbor_weight=0, **fast).fit(X).history_[-1]
    assert plain["validation_elbo"] == pytest.approx(-plain["validation_loss"], rel=1e-6)  # beta 1: the loss is -ELBO
    row = CompressionVAE(**fast).fit(X).history_[-1]
    assert row["validation_elbo"] == pytest.approx(row["validation_log_likelihood"] - row["validation_kl"])
    assert row["validation_loss"] > -row["validation_elbo"] + 1  # the neighbour term, which is not a likelihood


def test_seeded_fits_in_threads_give_the_model_of_a_fit_alone(digits):
    # Two seeded fits at once, beside a thread that draws from torch's default generator
    # all the while: each fit gives the model it gives alone, the drawing thread gets the
    # numbers its seed gives alone, and the caller's random state is left as it was.
    import threading

    X = digits[0][:400]
    params = dict(hidden_layer_sizes=(16,), max_steps=30, validation_interval=10, random_state=3, dropout=0.1,
                  neighbor_objective="umap")
    alone = CompressionVAE(**params).fit(X).transform(X)
    results, draws, done = {}, [], threading.Event()

    def fit(name):
        results[name] = CompressionVAE(**params).fit(X).transform(X)

    def draw():
        torch.manual_seed(11)
        while not done.is_set() or len(draws) < 10:
            draws.append(torch.rand(3))

    drawer = threading.Thread(target=draw)
    drawer.start()
    threads = [threading.Thread(target=fit, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    drawer.join()
    after = torch.get_rng_state()
    generator = torch.Generator().manual_seed(11)
    assert all(torch.equal(d, torch.rand(3, generator=generator)) for d in draws)
    assert torch.equal(after, generator.get_state())
    assert np.array_equal(results["a"], alone) and np.array_equal(results["b"], alone)
