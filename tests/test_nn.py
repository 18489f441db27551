"""Modules: parameters and names, train/eval, Dropout, init, MLP, state dicts, moving."""
from __future__ import annotations

import importlib.util

import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.errors import ArgumentError
from gradkit.nn import StateDictError


class TwoLayer(gk.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = gk.nn.Linear(3, 4, seed=1)
        self.second = gk.nn.Linear(4, 2, seed=2)
        self.scale = gk.tensor([1.5], requires_grad=True)
        self.note = "not a parameter"
        self.constant = gk.tensor([2.0])  # no gradient: a plain attribute

    def forward(self, x):
        return self.second(gk.relu(self.first(x))) * self.scale


# -- registration and walking --------------------------------------------------------

def test_named_parameters_are_dotted_and_in_definition_order():
    names = [name for name, _ in TwoLayer().named_parameters()]
    assert names == ["scale", "first.weight", "first.bias", "second.weight", "second.bias"]


def test_mlp_parameter_names_and_shapes():
    model = gk.nn.MLP([2, 100, 3])
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes == {"layers.0.weight": (2, 100), "layers.0.bias": (100,),
                      "layers.1.weight": (100, 3), "layers.1.bias": (3,)}
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())


def test_parameters_live_on_the_current_backend(backend):
    assert {p.backend for p in TwoLayer().parameters()} == {backend.name}


def test_reassigning_and_deleting_attributes_updates_the_registry():
    model = TwoLayer()
    model.scale = 3.0
    del model.second
    assert [name for name, _ in model.named_parameters()] == ["first.weight", "first.bias"]
    assert model.scale == 3.0


def test_a_shared_parameter_is_listed_once():
    model = TwoLayer()
    model.alias = model.first.weight
    assert len(list(model.parameters())) == 5


def test_a_plain_list_of_modules_is_refused_with_the_fix():
    model = gk.nn.Module()
    with pytest.raises(TypeError, match="Sequential"):
        model.layers = [gk.nn.Linear(2, 2)]


def test_assigning_before_super_init_says_what_to_do():
    class Broken(gk.nn.Module):
        def __init__(self):
            self.layer = gk.nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_sequential_indexing_length_and_iteration():
    relu = gk.nn.ReLU()
    net = gk.nn.Sequential(gk.nn.Linear(2, 4, seed=0), relu, gk.nn.Linear(4, 1, seed=1))
    assert len(net) == 3 and net[1] is relu and net[-1] is list(net)[2]
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = gk.tensor(np.random.default_rng(0).standard_normal((5, 2)))
    expected = net[2](gk.relu(net[0](x)))
    np.testing.assert_allclose(net(x).numpy(), expected.numpy())
    with pytest.raises(TypeError, match="argument 1 must be a Module"):
        gk.nn.Sequential(gk.nn.ReLU(), "relu")


def test_zero_grad_clears_every_gradient():
    model = TwoLayer()
    model(gk.ones((2, 3))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_shows_the_structure():
    text = repr(gk.nn.MLP([2, 5, 3], dropout=0.5))
    assert "Linear(in_features=2, out_features=5, bias=True)" in text
    assert "Dropout(p=0.5)" in text


# -- Linear and initialisation ----------------------------------------------------------

def test_linear_shapes_dtype_and_zero_bias():
    layer = gk.nn.Linear(3, 5, seed=0)
    assert layer.weight.shape == (3, 5) and layer.weight.dtype == np.float32
    assert layer.bias.numpy().tolist() == [0.0] * 5
    x = gk.tensor(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))
    np.testing.assert_allclose(layer(x).numpy(), x.numpy() @ layer.weight.numpy(), rtol=1e-6)
    assert gk.nn.Linear(3, 5, dtype="float64").weight.dtype == np.float64
    assert gk.nn.Linear(3, 5, bias=False).bias is None
    assert len(list(gk.nn.Linear(3, 5, bias=False).parameters())) == 1


def test_he_init_has_std_sqrt_2_over_fan_in():
    w = gk.nn.Linear(1000, 500, init="he", seed=0).weight.numpy()
    assert abs(w.std() / math.sqrt(2 / 1000) - 1) < 0.02
    assert abs(w.mean()) < 0.002


def test_xavier_init_is_glorot_uniform():
    w = gk.nn.Linear(1000, 500, init="xavier", seed=0).weight.numpy()
    bound = math.sqrt(6 / 1500)
    assert np.abs(w).max() <= bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02


def test_init_is_seeded():
    first, again, other = (gk.nn.Linear(20, 10, seed=s).weight.numpy() for s in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(gk.nn.MLP([4, 8, 2], seed=3).layers[0].weight.numpy(),
                                  gk.nn.MLP([4, 8, 2], seed=3).layers[0].weight.numpy())


def test_bad_linear_arguments_are_named():
    with pytest.raises(ArgumentError, match="unknown init 'lecun'"):
        gk.nn.Linear(2, 3, init="lecun")
    with pytest.raises(ArgumentError, match="out_features must be a positive int"):
        gk.nn.Linear(2, 0)


# -- Dropout and train/eval -------------------------------------------------------------

def test_dropout_is_the_identity_in_eval_mode_and_with_p_zero():
    x = gk.ones((4, 5))
    assert gk.nn.Dropout(0.5).eval()(x) is x
    assert gk.nn.Dropout(0.0)(x) is x


def test_dropout_in_training_zeroes_and_scales():
    x = gk.ones((200, 50), requires_grad=True)
    y = gk.nn.Dropout(0.25, seed=0)(x)
    values = y.numpy()
    np.testing.assert_allclose(np.unique(values), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((values == 0).mean() - 0.25) < 0.01
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), values)  # the gradient is the mask


def test_dropout_masks_are_seeded():
    x = gk.ones((10, 10))
    first, again = gk.nn.Dropout(0.5, seed=4), gk.nn.Dropout(0.5, seed=4)
    np.testing.assert_array_equal(first(x).numpy(), again(x).numpy())
    assert not np.array_equal(first(x).numpy(), first(x).numpy())  # a fresh mask per call


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, True, "0.5", None])
def test_dropout_probability_outside_0_1_is_an_error(p):
    with pytest.raises(ArgumentError, match=r"p must be a probability in \[0, 1\)"):
        gk.nn.Dropout(p)


def test_train_and_eval_are_recursive():
    model = gk.nn.MLP([3, 4, 4, 2], dropout=0.5)
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = gk.ones((2, 3))
    model.eval()
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())


# -- activation modules -------------------------------------------------------------

@pytest.mark.parametrize("module,function", [
    (gk.nn.ReLU(), gk.relu), (gk.nn.LeakyReLU(0.2), lambda x: gk.leaky_relu(x, slope=0.2)),
    (gk.nn.ELU(0.5), lambda x: gk.elu(x, alpha=0.5)), (gk.nn.Sigmoid(), gk.sigmoid),
    (gk.nn.Tanh(), gk.tanh), (gk.nn.Softplus(), gk.softplus), (gk.nn.GELU(), gk.gelu),
    (gk.nn.Maxout(3), lambda x: gk.maxout(x, pieces=3)), (gk.nn.Identity(), lambda x: x)])
def test_activation_modules_apply_their_op(module, function):
    x = gk.tensor(np.random.default_rng(0).standard_normal((4, 6)))
    np.testing.assert_allclose(module(x).numpy(), function(x).numpy())


# -- MLP ------------------------------------------------------------------------------

def _reference_mlp(model, x, activation):
    for i, layer in enumerate(model.layers):
        x = x @ layer.weight.numpy() + layer.bias.numpy()
        if i < len(model.layers) - 1:
            x = activation(x)
    return x


def test_mlp_forward_matches_numpy():
    model = gk.nn.MLP([2, 100, 50, 3], seed=0)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    out = model(gk.tensor(x))
    assert out.shape == (8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), _reference_mlp(model, x, lambda z: np.maximum(z, 0)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "sigmoid", "tanh",
                                        "identity"])
def test_mlp_hidden_layers_use_the_fused_bias_activation(activation):
    model = gk.nn.MLP([3, 8, 2], activation=activation)
    out = model(gk.ones((4, 3)))
    assert out.node.op.name == "linear"             # logits: linear, no activation
    hidden = out.node.inputs[0]
    assert hidden.node.op.name == "bias_activation"
    assert hidden.node.params["activation"] == activation
    assert hidden.node.inputs[0].node.op.name == "linear"  # x @ W, bias in the fused op
    assert len(hidden.node.inputs[0].node.inputs) == 2


@pytest.mark.parametrize("activation,last_op", [("gelu", "multiply"), ("softplus", "softplus"),
                                                ("maxout", "max")])
def test_mlp_other_activations_run_after_the_linear_layer(activation, last_op):
    model = gk.nn.MLP([3, 8, 2], activation=activation, pieces=3)
    out = model(gk.ones((4, 3)))
    assert out.shape == (4, 2)
    assert out.node.inputs[0].node.op.name == last_op
    if activation == "maxout":
        assert model.layers[0].weight.shape == (3, 24) and model.layers[1].weight.shape == (8, 2)


def test_mlp_default_init_depends_on_the_activation():
    tanh_weight = gk.nn.MLP([400, 400, 2], activation="tanh").layers[0].weight.numpy()
    relu_weight = gk.nn.MLP([400, 400, 2], activation="relu").layers[0].weight.numpy()
    assert np.abs(tanh_weight).max() <= math.sqrt(6 / 800)          # Xavier: uniform, bounded
    assert abs(relu_weight.std() / math.sqrt(2 / 400) - 1) < 0.02   # He


def test_mlp_dropout_acts_in_training_only():
    model = gk.nn.MLP([5, 64, 2], dropout=0.5, seed=0)
    x = gk.ones((3, 5))
    assert not np.array_equal(model(x).numpy(), model(x).numpy())
    model.eval()
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    np.testing.assert_allclose(model(x).numpy(), _reference_mlp(model, x.numpy(), relu),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims,message", [
    ([3], "at least the input and output"), (3, "at least the input and output"),
    ("23", "at least the input and output"), ([2, 0, 3], r"dims\[1\] must be a positive int"),
    ([2, 2.5, 3], r"dims\[1\] must be a positive int")])
def test_mlp_bad_dims_are_named(dims, message):
    with pytest.raises(ArgumentError, match=message):
        gk.nn.MLP(dims)


def test_mlp_bad_activation_or_init_lists_the_choices():
    with pytest.raises(ArgumentError, match="unknown activation 'swish'.*relu"):
        gk.nn.MLP([2, 3], activation="swish")
    with pytest.raises(ArgumentError, match="unknown init 'orthogonal'"):
        gk.nn.MLP([2, 3], init="orthogonal")
    with pytest.raises(ArgumentError, match="Maxout: pieces must be a positive int"):
        gk.nn.MLP([2, 4, 3], activation="maxout", pieces=0)
    with pytest.raises(ArgumentError, match=r"Dropout: p must be a probability"):
        gk.nn.MLP([2, 4, 3], dropout=1.0)


# -- state dicts ----------------------------------------------------------------------

def test_state_dict_holds_host_copies_with_their_dtype():
    model = gk.nn.MLP([2, 4, 3], dtype="float64")
    state = model.state_dict()
    assert list(state) == [name for name, _ in model.named_parameters()]
    assert all(type(a) is np.ndarray and a.dtype == np.float64 for a in state.values())
    state["layers.0.bias"][:] = 5.0
    assert model.layers[0].bias.numpy().tolist() == [0.0] * 4


@pytest.mark.parametrize("as_tensors", [False, True])
def test_load_state_dict_round_trip(as_tensors):
    source, target = gk.nn.MLP([2, 6, 3], seed=1), gk.nn.MLP([2, 6, 3], seed=2)
    weight = target.layers[0].weight
    state = dict(source.named_parameters()) if as_tensors else source.state_dict()
    assert target.load_state_dict(state) == ([], [])
    x = gk.tensor(np.random.default_rng(0).standard_normal((5, 2)))
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())
    assert target.layers[0].weight is weight  # the same parameter objects (optimizers keep them)
    assert weight.requires_grad and weight.backend == gk.get_backend().name
    assert weight._version == 1


def test_loaded_values_are_copies():
    model = gk.nn.Linear(2, 2)
    state = {"weight": np.ones((2, 2), np.float32), "bias": np.zeros(2, np.float32)}
    model.load_state_dict(state)
    state["weight"][:] = 7.0
    assert model.weight.numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]


def _snapshot(model):
    return {name: p.numpy() for name, p in model.named_parameters()}


def test_load_state_dict_errors_name_every_problem_and_change_nothing():
    model = gk.nn.MLP([2, 4, 3], seed=0)
    before = _snapshot(model)
    state = {name: np.full_like(a, 9.0) for name, a in before.items()}
    del state["layers.1.bias"]
    state["layers.0.weight"] = np.zeros((2, 5), np.float32)
    state["layers.1.weight"] = np.zeros((4, 3), np.float64)
    state["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: ['layers.1.bias']" in message
    assert "unexpected keys: ['extra.weight']" in message
    assert "'layers.0.weight': expected float32 (2, 4), got float32 (2, 5)" in message
    assert "'layers.1.weight': expected float32 (4, 3), got float64 (4, 3)" in message
    after = _snapshot(model)
    for name in before:  # layers.0.bias was valid, yet it did not change either
        np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_each_load_error_alone_changes_nothing(change):
    model = gk.nn.Linear(3, 2, seed=0)
    before = _snapshot(model)
    state = {"weight": np.ones((3, 2), np.float32), "bias": np.ones(2, np.float32)}
    if change == "missing":
        del state["bias"]
    elif change == "unexpected":
        state["scale"] = np.ones(1, np.float32)
    else:
        state["bias"] = np.ones(3, np.float32)
    with pytest.raises(StateDictError, match="bias" if change != "unexpected" else "scale"):
        model.load_state_dict(state)
    assert all(np.array_equal(before[k], v) for k, v in _snapshot(model).items())


def test_non_strict_load_skips_missing_and_unexpected_keys():
    model = gk.nn.Linear(3, 2, seed=0)
    result = model.load_state_dict({"bias": np.ones(2, np.float32), "other": np.ones(1)},
                                   strict=False)
    assert result.missing_keys == ["weight"] and result.unexpected_keys == ["other"]
    assert model.bias.numpy().tolist() == [1.0, 1.0]
    with pytest.raises(StateDictError, match="'bias': expected float32 \\(2,\\)"):
        model.load_state_dict({"bias": np.ones(4, np.float32)}, strict=False)


def test_load_state_dict_refuses_non_arrays():
    with pytest.raises(StateDictError, match="'bias': expected a NumPy array or Tensor, got list"):
        gk.nn.Linear(1, 2).load_state_dict({"weight": np.ones((1, 2), np.float32),
                                            "bias": [0.0, 0.0]})



@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_big_endian_arrays_load_with_their_values(dtype):
    model = gk.nn.Linear(3, 2, dtype=dtype)
    values = np.arange(6).reshape(3, 2) / 8 - 0.25  # exact in both widths
    state = {"weight": values.astype(np.dtype(dtype).newbyteorder(">")),
             "bias": np.array([1.5, -2.0], np.dtype(dtype).newbyteorder(">"))}
    assert state["weight"].dtype.str in (">f4", ">f8")
    model.load_state_dict(state)
    assert model.weight.dtype == np.dtype(dtype) and model.weight.numpy().dtype.isnative
    assert model.weight.numpy().tolist() == values.tolist()
    assert model.bias.numpy().tolist() == [1.5, -2.0]


# -- moving between backends -----------------------------------------------------------

@pytest.mark.skipif(not importlib.util.find_spec("array_api_strict"),
                    reason="the test backend 'strict' needs array-api-strict")
def test_to_moves_every_parameter_and_training_works_there(backend):
    model = gk.nn.MLP([2, 4, 3], seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    expected = model(gk.tensor(x)).numpy()
    assert model.to("strict") is model
    assert {p.backend for p in model.parameters()} == {"strict"}
    assert all(p.requires_grad and p.is_leaf and p.grad is None for p in model.parameters())
    out = model(gk.tensor(x, backend="strict"))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    out.sum().backward()
    assert model.layers[0].weight.grad.backend == "strict"
    model.to(backend.name)
    assert {p.backend for p in model.parameters()} == {backend.name}


def test_to_the_same_backend_keeps_the_parameters(backend):
    model = gk.nn.Linear(2, 2)
    weight = model.weight
    model.to(backend.name)
    assert model.weight is weight


def test_intermediate_tensors_are_plain_attributes():
    model = gk.nn.Linear(2, 2)
    model.cache = model(gk.ones((1, 2)))  # not a leaf: never a parameter
    assert [name for name, _ in model.named_parameters()] == ["weight", "bias"]
