"""Surgery on models autofix did not write: the traced forward path, the output head, activations
recognised by behaviour, and the hidden-layer knobs that never touch the head (torch, no Ray)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autofix.harness.anatomy import activation_problem, nonfinite_metrics, trace
from autofix.harness.builders import build_model
from autofix.harness.initialize import reinitialize
from autofix.harness.surgery import add_batch_norm, add_dropout, set_output_activation, swap_activations
from autofix.spec.catalogue import harness_reports


class Exp(nn.Module):  # a user's activation: forward returns torch.exp(x)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Swish(nn.Module):  # a composite activation: its inner Sigmoid is part of its function
    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class Scale(nn.Module):  # parameter-free, elementwise, affine: no activation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * x + 1.0


class RowNorm(nn.Module):  # parameter-free, shape-preserving, not elementwise
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=1, keepdim=True)


class Ramp(nn.Module):  # elementwise but a different function at each position
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * torch.arange(1, x.shape[-1] + 1)


class Noisy(nn.Module):  # random in eval mode too
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) + torch.rand_like(x)


class Blocks(nn.Module):  # layers as attributes and a ModuleList, an activation shared by hidden layers
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 6)
        self.act = nn.Softplus()
        self.blocks = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)])
        self.out = nn.Linear(6, 3)
        self.head_act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.inp(x))
        for block in self.blocks:
            x = self.act(block(x))
        return self.head_act(self.out(x))


class SharedHead(nn.Module):  # the same Sigmoid module after hidden layers and after the output
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.sig = nn.Linear(2, 4), nn.Linear(4, 3), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sig(self.b(self.sig(self.a(x))))


class FunctionalHead(nn.Module):  # the output activation is a function inside forward()
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.b(torch.tanh(self.a(x))), dim=1)


def kinds(model: nn.Module) -> list[str]:
    return [type(c.module).__name__ for c in trace(model, torch.randn(4, 2)).calls]


def sigmoid_stack() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 5), nn.Sigmoid(), nn.Linear(5, 3), nn.Sigmoid())


# -- activations by behaviour ------------------------------------------------------------------

@pytest.mark.parametrize("module, problem", [
    (nn.ReLU(), None), (nn.Sigmoid(), None), (nn.Tanh(), None), (nn.Softplus(), None), (nn.Softsign(), None),
    (nn.Hardsigmoid(), None), (nn.GELU(), None), (nn.SELU(), None), (nn.LeakyReLU(0.3), None), (Exp(), None),
    (Swish(), None),
    (nn.Identity(), "affine"), (nn.Dropout(0.5), "affine"), (nn.Flatten(), "affine"), (Scale(), "affine"),
    (nn.Softmax(dim=1), "not elementwise"), (RowNorm(), "not elementwise"), (Ramp(), "not elementwise"),
    (nn.Linear(9, 9), "has parameters"), (nn.PReLU(), "has parameters"), (nn.MaxPool1d(2), "changes the shape"),
    (Noisy(), "not deterministic"),
])
def test_an_activation_is_recognised_by_what_it_does(module, problem):
    found = activation_problem(module)
    assert (found is None) if problem is None else (problem in found)


def test_the_behaviour_check_consumes_none_of_the_models_randomness():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    assert activation_problem(nn.CELU(0.123)) is None  # a kind not checked before: it runs now
    assert torch.equal(torch.rand(3), expected)


# -- the path and the head ---------------------------------------------------------------------

@pytest.mark.parametrize("model, head", [
    (sigmoid_stack(), ["Linear", "Sigmoid"]),
    (nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)), ["Linear"]),
    (nn.Sequential(nn.Sequential(nn.Linear(2, 5), Exp()), nn.Sequential(nn.Linear(5, 3), nn.Softmax(dim=1))),
     ["Linear", "Softmax"]),
    (Blocks(), ["Linear", "Sigmoid"]),
    (nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3), nn.BatchNorm1d(3), Swish()),
     ["Linear", "BatchNorm1d", "Swish"]),
])
def test_the_head_is_the_last_weight_layer_and_what_follows(model, head):
    by_hooks, by_fx = trace(model, torch.randn(4, 2)), trace(model)
    assert [type(c.module).__name__ for c in by_hooks.head()] == head
    assert [c.name for c in by_fx.calls] == [c.name for c in by_hooks.calls]


@pytest.mark.parametrize("model, functional", [(sigmoid_stack(), False), (FunctionalHead(), True)])
def test_a_function_after_the_last_module_is_seen(model, functional):
    assert trace(model, torch.randn(4, 2)).tail_functional is functional
    assert trace(model).tail_functional is functional


# -- hidden-layer surgery never touches the head -------------------------------------------------

def test_the_issues_reproduction_keeps_the_output_sigmoid():
    model = swap_activations(sigmoid_stack(), "selu")
    assert [type(m).__name__ for m in model] == ["Linear", "SELU", "Linear", "Sigmoid"]


@pytest.mark.parametrize("make, before, after", [
    (lambda: nn.Sequential(nn.Linear(2, 5), Exp(), nn.Linear(5, 5), nn.Softsign(), nn.Linear(5, 3), nn.Sigmoid()),
     ["Linear", "Exp", "Linear", "Softsign", "Linear", "Sigmoid"],
     ["Linear", "Tanh", "Linear", "Tanh", "Linear", "Sigmoid"]),
    (Blocks, ["Linear", "Softplus", "Linear", "Softplus", "Linear", "Softplus", "Linear", "Sigmoid"],
     ["Linear", "Tanh", "Linear", "Tanh", "Linear", "Tanh", "Linear", "Sigmoid"]),
    (lambda: nn.Sequential(nn.Linear(2, 5), Swish(), nn.Dropout(0.1), nn.Linear(5, 3)),
     ["Linear", "Swish", "Dropout", "Linear"], ["Linear", "Tanh", "Dropout", "Linear"]),
])
def test_every_hidden_activation_is_swapped_whatever_its_class_or_container(make, before, after):
    model = make()
    assert kinds(model) == before
    assert kinds(swap_activations(model, "tanh")) == after


@pytest.mark.parametrize("model, found", [
    (nn.Sequential(nn.Linear(2, 5), nn.Linear(5, 3), nn.Sigmoid()), "no parameter-free module between"),
    (nn.Sequential(nn.Linear(2, 5), nn.Flatten(), nn.Linear(5, 3)), "'1' (Flatten) is affine"),
    (SharedHead(), "'sig' (Sigmoid) is also called in the output head"),
    (FunctionalHead(), "called as functions inside forward()"),
])
def test_nothing_to_swap_says_what_was_found(model, found):
    with pytest.raises(ValueError, match=r"architecture\.activation: found no hidden activation") as err:
        swap_activations(model, "selu", sample=torch.randn(4, 2))
    assert found in str(err.value) and "functional activations" not in str(err.value)


def test_the_nonfinite_scope_swaps_only_the_kind_that_overflows():
    model = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 5), Exp(), nn.Linear(5, 5), Exp(), nn.Linear(5, 3))
    with torch.no_grad():
        for layer in model[::2]:
            layer.weight.fill_(3.0)
    x = torch.full((4, 2), 5.0)
    assert kinds(swap_activations(model, "selu", "nonfinite", x)) == ["Linear", "Tanh", "Linear", "SELU", "Linear",
                                                                      "SELU", "Linear"]
    with pytest.raises(ValueError, match="no hidden activation has a non-finite output"):
        swap_activations(model, "relu", "nonfinite", x)


def test_batch_norm_goes_after_hidden_layers_never_before_the_output_activation():
    model = add_batch_norm(sigmoid_stack())
    assert [type(m).__name__ for m in model] == ["Linear", "BatchNorm1d", "Sigmoid", "Linear", "Sigmoid"]
    wrapped = add_batch_norm(Blocks())
    assert kinds(wrapped)[:3] == ["Linear", "BatchNorm1d", "Softplus"] and kinds(wrapped)[-2:] == ["Linear", "Sigmoid"]


def test_dropout_goes_on_hidden_activations_of_models_of_any_shape():
    assert [type(m).__name__ for m in add_dropout(sigmoid_stack(), 0.2)] == ["Linear", "Sigmoid", "Dropout", "Linear",
                                                                            "Sigmoid"]
    model = add_dropout(FunctionalHead(), 0.3)  # not a Sequential: the Linear is wrapped
    assert kinds(model) == ["Linear", "Dropout", "Linear"]


@pytest.mark.parametrize("model, name, head", [
    (sigmoid_stack(), "softmax", ["Linear", "Softmax"]),
    (sigmoid_stack(), "identity", ["Linear"]),
    (nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)), "log_softmax", ["Linear", "LogSoftmax"]),
    (Blocks(), "softmax", ["Linear", "Softmax", "Identity"]),
])
def test_set_output_activation_changes_the_head_only(model, name, head):
    hidden = kinds(model)[:-len(trace(model, torch.randn(4, 2)).head())]
    out = set_output_activation(model, name, torch.randn(4, 2))
    path = trace(out, torch.randn(4, 2))
    assert [type(c.module).__name__ for c in path.head()] == head
    assert kinds(out)[:len(hidden)] == hidden


@pytest.mark.parametrize("model, name, message", [
    (nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1)), "softmax", "already ends with softmax"),
    (nn.Sequential(nn.Linear(2, 3)), "identity", "already ends with identity"),
    (FunctionalHead(), "identity", "a function inside forward"),
    (SharedHead(), "softmax", "also run in hidden layers"),
])
def test_set_output_activation_refuses_what_it_cannot_do(model, name, message):
    with pytest.raises(ValueError, match=message):
        set_output_activation(model, name, torch.randn(4, 2))


# -- re-initialisation keeps the head unless asked ----------------------------------------------

@pytest.mark.parametrize("spec, changed", [
    ({"scheme": "lecun_normal"}, {"0", "2"}),
    ({"scheme": "xavier", "head": True}, {"0", "2", "4"}),
    ({"scheme": "kaiming", "pattern": "^4$", "head": True}, {"4"}),
])
def test_reinitialize_leaves_the_head_alone_unless_asked(spec, changed):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 40), nn.Tanh(), nn.Linear(40, 3), nn.Sigmoid())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reinitialize(model, {**spec, "types": ["Linear"]}, trace(model).head_ids())
    moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == changed


def test_lecun_normal_has_the_std_keras_gives_it():
    torch.manual_seed(0)
    layer = nn.Linear(400, 300)
    reinitialize(nn.Sequential(layer, nn.Tanh(), nn.Linear(300, 2)), {"scheme": "lecun_normal", "types": ["Linear"]},
                 {0})
    w = layer.weight.detach()
    sigma = math.sqrt(1 / 400) / 0.87962566103423978
    assert w.std().item() == pytest.approx(math.sqrt(1 / 400), rel=0.02)
    assert w.abs().max().item() <= 2 * sigma + 1e-7


def test_build_model_with_a_sample_matches_the_factorys_weights_outside_the_changed_parts():
    spec = {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3,
                                                              "hidden": [8, 8], "activation": "sigmoid"}}
    sample = torch.randn(4, 2)
    torch.manual_seed(0)
    plain = build_model({"factory": "test_anatomy:plain_stack"})
    torch.manual_seed(0)
    swapped = build_model({"factory": "test_anatomy:plain_stack"}, {"activation": "selu"}, sample=sample)
    assert all(torch.equal(a, b)
               for a, b in zip(plain.state_dict().values(), swapped.state_dict().values(), strict=False))
    assert build_model(spec, {"activation": "tanh"})[1].__class__ is nn.Tanh  # the factory's own knob


def plain_stack() -> nn.Sequential:
    return sigmoid_stack()


# -- the probe names the first non-finite output ----------------------------------------------

@pytest.mark.parametrize("weight, expected", [
    (0.1, {}),
    (30.0, {"nonfinite_output_index": 3.0, "nonfinite_module/Exp": 1.0, "nonfinite_output_activation": 1.0}),
])
def test_the_first_nonfinite_output_is_named(weight, expected):
    model = nn.Sequential(nn.Linear(2, 4), Exp(), nn.Linear(4, 4), Exp(), nn.Linear(4, 3))
    with torch.no_grad():
        for layer in model[::2]:
            layer.weight.fill_(weight)
            layer.bias.zero_()
    found = nonfinite_metrics(model, torch.full((4, 2), 1.0))
    assert {k: v for k, v in found.items() if not k.startswith("nonfinite_output/")} == expected
    assert (found.get("nonfinite_output/3") == 1.0) == bool(expected)
    # the spec's metric catalogue knows each key (autofix.spec.training.FAULT_METRICS/FAULT_FAMILIES)
    assert all(harness_reports(k) and not harness_reports(k, probes=False) for k in found)
