"""Bridge training, KD baseline and composition on tiny stand-in adapters (no real models)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from tiny_adapters import TinyNew, TinyOld, onnx_round_trip
from tiny_adapters import paired_data as _data
from torch import nn

from bridge_edge.bridge.compose import compose
from bridge_edge.bridge.features import collect_features
from bridge_edge.bridge.kd import make_student, train_kd
from bridge_edge.bridge.loop import PairData
from bridge_edge.bridge.prototype import to_layout
from bridge_edge.bridge.train import head_kl, make_bridge, train_bridge

torch.set_num_threads(1)


def _train_on_split(old, new, bridge, ppg, store, **kwargs):
    """train_bridge at positions (1, 1): the first 32 windows pair, the rest validate."""
    pair, val = PairData(ppg[:32], store.old_target[:32]), PairData(ppg[32:], store.old_target[32:])
    return train_bridge(old, new, bridge, 1, 1, pair, val, **kwargs)


def _train_without_old_probs(old, new, bridge, ppg, store, **kwargs):
    """One epoch on pair and validation data that carry no old-head probabilities."""
    plain = PairData(ppg, store.old_target)
    return train_bridge(old, new, bridge, 1, 1, plain, plain, epochs=1, lr=0.1, **kwargs)


def test_feature_store_pools_every_block_in_one_pass():
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data(20)
    store = collect_features(old, new, ecg, ppg, batch_size=8)
    assert [f.shape for f in store.new_pooled] == [(20, 8)] * 3
    assert [f.shape for f in store.old_pooled] == [(20, 6)] * 3
    assert store.old_target.shape == (20, 4 * 6) and store.old_target.dtype == np.float16
    assert store.old_probs.shape == (20, 3)
    np.testing.assert_allclose(store.old_probs.sum(axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():  # old pooled input of block 1 = mean over tokens of block-0 output
        h1 = old.run_blocks(old.stem(old.prepare(ecg)), 0, 1)
    np.testing.assert_allclose(store.old_pooled[1], h1.mean(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in old.module.parameters())


def test_head_kl_is_recorded_every_epoch_and_can_pick_the_epoch():
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data()
    store = collect_features(old, new, ecg, ppg, batch_size=16)
    results = {}
    for by in ("val_loss", "val_head_kl"):
        bridge = make_bridge(new, old, k_in=1, k_out=1, rank=3, prototypes=4, probe=(ppg[:2], ecg[:2]))
        results[by] = result = _train_on_split(
            old,
            new,
            bridge,
            ppg,
            store,
            epochs=5,
            lr=0.05,
            batch_size=16,
            best_epoch_by=by,
            val_old_probs=store.old_probs[32:],
        )
        assert len(result.val_head_kl) == len(result.val_loss) == 5 and result.best_epoch_by == by
        assert getattr(result, by)[result.best_epoch - 1] == min(getattr(result, by))
        # on return the bridge holds the chosen epoch: its head KL is the one recorded for it
        with torch.no_grad():
            z = new.pool(new.run_blocks(new.stem(new.prepare(ppg[32:])), 0, 2))
            probs = old.head(old.run_blocks(to_layout(bridge(z), old.layout), 1, old.n_blocks))
        kl = head_kl(torch.from_numpy(store.old_probs[32:]), probs)
        assert kl == pytest.approx(result.val_head_kl[result.best_epoch - 1], rel=1e-4)
    assert results["val_loss"].val_head_kl == results["val_head_kl"].val_head_kl  # same seed, same path
    with pytest.raises(ValueError, match="val_old_probs"):
        _train_without_old_probs(old, new, bridge, ppg, store, best_epoch_by="val_head_kl")


def test_a_head_kl_term_moves_the_bridged_head_toward_the_old_models_calls():
    """[bridge] head_kl_weight adds KL(old head on ECG || old head on bridged PPG) to the loss.
    With a cosine target that gives no gradient (all zeros), only that term can move the bridge."""
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data()
    store = collect_features(old, new, ecg, ppg, batch_size=16)
    no_target = np.zeros_like(store.old_target[:32])
    results = {}
    for weight in (0.0, 1.0):
        bridge = make_bridge(new, old, k_in=1, k_out=1, rank=3, prototypes=4, probe=(ppg[:2], ecg[:2]))
        pair = PairData(ppg[:32], no_target, store.old_probs[:32])
        results[weight] = train_bridge(
            old,
            new,
            bridge,
            1,
            1,
            pair,
            pair,
            epochs=6,
            lr=0.05,
            batch_size=16,
            val_old_probs=store.old_probs[:32],
            head_kl_weight=weight,
        )
    assert len(set(results[0.0].val_head_kl)) == 1  # the bridge never moved
    assert min(results[1.0].val_head_kl) < 0.95 * results[0.0].val_head_kl[0]
    # val_loss stays the cosine loss alone, so it compares across weights
    assert results[1.0].val_loss == pytest.approx([1.0] * 6)
    assert results[1.0].train_loss[0] > 1.0  # the training loss carries the term
    with pytest.raises(ValueError, match="old_probs"):
        _train_without_old_probs(old, new, bridge, ppg, store, head_kl_weight=1.0)


def test_a_moving_average_is_what_is_validated_picked_and_returned():
    """fit_epochs with ema_decay: each step sets the weight to the step number, so the average the
    epochs validate is known in closed form (torch's EMA copies the first step, then
    ema <- d * ema + (1 - d) * w)."""
    from bridge_edge.bridge.loop import fit_epochs

    model = nn.Linear(1, 1, bias=False)
    steps = iter(range(1, 100))

    def step(idx):
        with torch.no_grad():
            model.weight.fill_(float(next(steps)))
        return 0.0

    seen = []

    def validate():
        w = float(model.weight)
        seen.append(w)
        return {"val_loss": (w - 3.0) ** 2}

    decay = 0.5
    result = fit_epochs(
        model, step, validate, n=8, epochs=3, batch_size=2, seed=0,
        optimizer=torch.optim.Adam(model.parameters()), resident=[model], device=torch.device("cpu"),
        desc="ema", ema_decay=decay,
    )  # fmt: skip
    expected, ema = [], None
    for k in range(1, 13):  # 4 steps an epoch
        ema = float(k) if ema is None else decay * ema + (1 - decay) * k
        if k % 4 == 0:
            expected.append(ema)
    assert seen == pytest.approx(expected)  # the average was validated, not the raw weight (4, 8, 12)
    assert result.ema_decay == decay and result.best_epoch == 1  # 3.125 is nearest 3
    assert float(model.weight) == pytest.approx(expected[0])  # and returned
    raw = fit_epochs(
        model, step, validate, n=8, epochs=1, batch_size=2, seed=0,
        optimizer=torch.optim.Adam(model.parameters()), resident=[model], device=torch.device("cpu"), desc="raw",
    )  # fmt: skip
    assert seen[-1] == 16.0 and raw.ema_decay == 0.0  # without it, the last step's weight


def test_a_bridge_trained_with_a_moving_average_returns_the_average_it_picked():
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data()
    store = collect_features(old, new, ecg, ppg, batch_size=16)
    bridge = make_bridge(new, old, k_in=1, k_out=1, rank=3, prototypes=4, probe=(ppg[:2], ecg[:2]))
    result = _train_on_split(
        old, new, bridge, ppg, store, epochs=4, lr=0.05, batch_size=16,
        best_epoch_by="val_head_kl", val_old_probs=store.old_probs[32:], ema_decay=0.9,
    )  # fmt: skip
    assert result.ema_decay == 0.9
    with torch.no_grad():
        z = new.pool(new.run_blocks(new.stem(new.prepare(ppg[32:])), 0, 2))
        probs = old.head(old.run_blocks(to_layout(bridge(z), old.layout), 1, old.n_blocks))
    kl = head_kl(torch.from_numpy(store.old_probs[32:]), probs)
    assert kl == pytest.approx(result.val_head_kl[result.best_epoch - 1], rel=1e-4)


def test_head_kl_is_zero_for_identical_outputs_and_positive_otherwise():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert head_kl(p, p) == pytest.approx(0.0, abs=1e-6)
    assert head_kl(p, p.flip(1)) > 0.5


def test_bridge_training_lowers_loss_touches_only_the_bridge_and_composes():
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data()
    store = collect_features(old, new, ecg, ppg, batch_size=16)
    old_before = {k: v.clone() for k, v in old.module.state_dict().items()}
    bridge = make_bridge(new, old, k_in=1, k_out=1, rank=3, prototypes=4, probe=(ppg[:2], ecg[:2]))
    assert (bridge.d_in, bridge.d_out, bridge.n_tokens) == (8, 6, 4)  # discovered by the probe batch
    result = _train_on_split(old, new, bridge, ppg, store, epochs=6, lr=0.05, batch_size=16)
    assert result.trainable_params == bridge.n_params == 3 * 8 + 4 * 4 * 3 + 6 * 4
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.val_loss[result.best_epoch - 1] == min(result.val_loss)
    assert result.peak_memory_bytes > 0 and result.seconds_per_epoch > 0
    for k, v in old.module.state_dict().items():
        assert torch.equal(v, old_before[k]), k
    assert all(p.grad is None for p in old.module.parameters())

    model = compose(new, old, bridge, 1, 1)
    x = torch.from_numpy(ppg[:5])
    with torch.no_grad():
        z = new.pool(new.run_blocks(new.stem(x.unsqueeze(1)), 0, 2))
        manual = old.head(old.run_blocks(bridge(z).transpose(1, 2), 1, 3))
        torch.testing.assert_close(model(x), manual)
    probs = model.predict_proba(ppg[:5])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_kd_student_trains_the_whole_new_model_with_the_same_bookkeeping():
    old, new = TinyOld(), TinyNew().freeze()
    ecg, ppg = _data()
    store = collect_features(old, None, ecg, None, batch_size=16)
    student = make_student(new, n_classes=3, probe=ppg[:2])
    n_new = sum(p.numel() for p in new.module.parameters())
    result = train_kd(
        student,
        PairData(ppg[:32], store.old_probs[:32]),
        PairData(ppg[32:], store.old_probs[32:]),
        epochs=4,
        lr=0.02,
        batch_size=16,
    )
    assert result.trainable_params == n_new + 8 * 3 + 3
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.peak_memory_bytes > 0
    assert not any(p.requires_grad for p in new.module.parameters())  # the frozen original is untouched
    assert student.predict_proba(ppg[:4]).shape == (4, 3)
    # with a moving average (batch-norm statistics averaged too), the same loop validates it
    averaged = train_kd(
        make_student(new, n_classes=3, probe=ppg[:2]),
        PairData(ppg[:32], store.old_probs[:32]),
        PairData(ppg[32:], store.old_probs[32:]),
        epochs=2, lr=0.02, batch_size=16, ema_decay=0.5,
    )  # fmt: skip
    assert averaged.ema_decay == 0.5 and averaged.val_loss != result.val_loss[:2]


def test_composed_model_exports_to_onnx_and_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data(8)
    bridge = make_bridge(new, old, 0, 2, rank=2, prototypes=3, probe=(ppg[:2], ecg[:2]))
    with torch.no_grad():
        bridge.B.normal_()
    model = compose(new, old, bridge, 0, 2)
    got = onnx_round_trip(model, ppg, tmp_path / "m.onnx")
    np.testing.assert_allclose(got, model.predict_proba(ppg), atol=1e-5)


def test_cached_bridge_inputs_are_what_the_new_model_gives_each_batch():
    from bridge_edge.bridge.train import bridge_inputs, new_block_output

    new = TinyNew().freeze()
    _, ppg = _data()
    cached = bridge_inputs(new, ppg, k_in=1, batch_size=7)  # batch size unrelated to training's
    assert cached.shape == (len(ppg), 8) and not cached.requires_grad
    for idx in (np.arange(16), np.array([40, 3, 17])):
        torch.testing.assert_close(
            cached[torch.from_numpy(idx)], new.pool(new_block_output(new, ppg[idx], 1))
        )


def test_token_bridge_trains_on_cached_tokens_and_composes_through_onnx(tmp_path):
    """[bridge] input = "tokens": the cache holds each window's block-k_in tokens channel-first,
    training moves the time-local term, and the composed model exports with it."""
    from bridge_edge.bridge.prototype import TokenPrototypeBridge
    from bridge_edge.bridge.train import bridge_inputs, new_block_output

    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data()
    store = collect_features(old, new, ecg, ppg, batch_size=16)
    bridge = make_bridge(new, old, 1, 1, rank=2, prototypes=3, probe=(ppg[:2], ecg[:2]), reads="tokens")
    assert isinstance(bridge, TokenPrototypeBridge)
    tokens = new_block_output(new, ppg[:3], 1)
    cached = bridge_inputs(new, ppg[:3], 1, bridge=bridge)
    torch.testing.assert_close(cached, bridge.read(new, tokens))
    assert cached.shape == (3, 8, bridge.t_in) and bridge.t_in > 1
    result = _train_on_split(old, new, bridge, ppg, store, epochs=2, lr=0.05)
    assert result.trainable_params == bridge.n_params
    assert torch.count_nonzero(bridge.B_local) > 0  # the local term learnt something
    model = compose(new, old, bridge, 1, 1)
    got = onnx_round_trip(model, ppg[:8], tmp_path / "tokens.onnx")
    np.testing.assert_allclose(got, model.predict_proba(ppg[:8]), atol=1e-5)
