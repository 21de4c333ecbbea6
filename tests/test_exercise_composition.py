"""The K-composition checker (notebook 11) names each conceptual slip, and accepts other right answers."""
import torch

from mistral_edu import exercises as ex


def verdict(capsys, answer):
    ok = ex.check_k_composition(answer)
    return ok, capsys.readouterr().out


def fro(m):
    return torch.linalg.matrix_norm(m)


def test_right_answers_in_other_forms_are_accepted(capsys):
    as_float = lambda q, k, o, v: float(fro(q.T @ k @ o @ v) / (fro(q.T @ k) * fro(o @ v)))
    by_traces = lambda q, k, o, v: (torch.trace((q.T @ k @ o @ v).T @ (q.T @ k @ o @ v))
                                    / (torch.trace((q.T @ k).T @ (q.T @ k)) * torch.trace((o @ v).T @ (o @ v)))).sqrt()
    for answer in (as_float, by_traces):
        ok, out = verdict(capsys, answer)
        assert ok and out.startswith("correct"), out


def test_each_conceptual_mistake_gets_its_own_message(capsys):
    mistakes = {
        "without the normalisation": lambda q, k, o, v: fro(q.T @ k @ o @ v),
        "norms of the four matrices": lambda q, k, o, v: fro(q.T @ k @ o @ v) / (fro(q) * fro(k) * fro(o) * fro(v)),
        "Q-composition": lambda q, k, o, v: fro(k.T @ q @ o @ v) / (fro(k.T @ q) * fro(o @ v)),
        "wrong order": lambda q, k, o, v: fro(o @ v @ q.T @ k) / (fro(q.T @ k) * fro(o @ v)),
        "spectral norm": lambda q, k, o, v: (torch.linalg.matrix_norm(q.T @ k @ o @ v, ord=2)
                                             / (torch.linalg.matrix_norm(q.T @ k, ord=2) * torch.linalg.matrix_norm(o @ v, ord=2))),
    }
    for words, answer in mistakes.items():
        ok, out = verdict(capsys, answer)
        assert not ok and out.startswith("not solved yet") and words in out, (words, out)
        assert "hint('k_composition')" in out


def test_a_matrix_or_an_unknown_number_is_described(capsys):
    ok, out = verdict(capsys, lambda q, k, o, v: q.T @ k @ o @ v)
    assert not ok and "return one number" in out
    ok, out = verdict(capsys, lambda q, k, o, v: 0.5)
    assert not ok and "you have 0.5" in out
