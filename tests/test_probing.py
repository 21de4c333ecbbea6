"""Probes and steering (notebook 12): the shipped labels, each building block, and the lesson's two claims on
the embedded default: the probe chosen on validation beats both current-token classifiers by 10 pp, with positive
selectivity against Hewitt & Liang's control and above a bag of the preceding words, and steering moves the style of
the generated words up with the scale over the range where the generations stay out of loops."""
import pytest
import torch

import mistral_edu as me
from mistral_edu import analysis, generation
from mistral_edu.default import heldout_labelled, heldout_sample
from mistral_edu.default.corpus import quotation_spans


@pytest.fixture(scope="module")
def model():
    return me.load_model(me.default.DEFAULT_DIR)


@pytest.fixture(scope="module")
def tok():
    return me.load_tokenizer()


@pytest.fixture(scope="module")
def records():
    return heldout_labelled()


# ------------------------------------------------------------------ the shipped labels

def test_labelled_passages_are_the_heldout_documents(records):
    assert [r["text"] for r in records] == heldout_sample()
    sources = [r["source"] for r in records]
    # documents are the 1,189 Bible chapters, then the Jargon File; every 40th held out: 29 chapters first
    assert sources == ["bible"] * 29 + ["jargon"] * 104
    assert [r["document"] for r in records] == list(range(39, 40 * 133, 40))


def test_quotation_spans_are_the_text_between_double_marks(records):
    for r in records:
        assert [tuple(span) for span in r["quoted"]] == quotation_spans(r["text"])
        for a, b in r["quoted"]:
            assert r["text"][a - 1] == "“" and r["text"][b] == "”"
    assert quotation_spans("he said “Ack pffft!” and “no”.") == [(9, 19), (26, 28)]


def test_windows_mark_tokens_inside_quotations(tok):
    text = "he said “Ack pffft!” ok and then went on talking for a while longer"
    w = analysis.passage_windows(tok, [{"text": text, "source": "jargon", "quoted": quotation_spans(text)}], 10)
    pieces = [tok.id_to_piece(i) for i in w.tokens[0].tolist()]
    inside = [p for p, q in zip(pieces, w.quoted[0].tolist()) if q]
    assert pieces[0] == "<s>" and inside == ["A", "ck", "▁p", "ff", "ft", "!”"], (pieces, inside)
    assert w.label.tolist() == [1]


def test_windows_have_equal_length_and_never_span_passages(tok, records):
    w = analysis.passage_windows(tok, records[:3], 32)
    assert w.tokens.shape[1] == 33 and (w.tokens[:, 0] == tok.bos_id).all()
    for passage in w.passage.unique().tolist():
        ids = tok.encode(records[passage]["text"], bos=False)
        rows = w.tokens[w.passage == passage][:, 1:].flatten().tolist()
        assert rows == ids[:len(rows)]
    with pytest.raises(ValueError, match="shorter length"):
        analysis.passage_windows(tok, [{"text": "short", "source": "bible", "quoted": []}], 32)


# ------------------------------------------------------------------ building blocks

def test_shared_token_mask_keeps_ids_in_both_classes_and_never_bos():
    tokens = torch.tensor([[1, 5, 6, 7], [1, 5, 8, 9]])
    mask = analysis.shared_token_mask(tokens, torch.tensor([0, 1]))
    assert mask.tolist() == [[False, True, False, False], [False, True, False, False]]


def test_balanced_accuracy_puts_chance_at_one_half():
    labels = torch.tensor([0] * 9 + [1])
    assert analysis.balanced_accuracy(torch.full((10,), -1.0), labels) == 0.5      # always 0: 90% plain accuracy
    assert analysis.balanced_accuracy(torch.tensor([-1.0] * 9 + [1.0]), labels) == 1.0


def test_probe_separates_separable_data_and_needs_both_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    x = torch.randn(200, 8, generator=g) + 6 * labels[:, None] * torch.tensor([1.0] + [0.0] * 7)
    probe = analysis.train_probe(x, labels)
    assert analysis.balanced_accuracy(probe.logits(x), labels) > 0.95
    assert probe.direction()[0] > probe.direction()[1:].abs().max()
    with pytest.raises(ValueError, match="both labels"):
        analysis.train_probe(x, torch.zeros(200, dtype=torch.long))


def test_token_identity_accuracy_is_a_per_token_majority_vote():
    ids = torch.tensor([5, 5, 5, 6, 6, 6, 5, 6])
    labels = torch.tensor([1, 1, 0, 0, 0, 1, 1, 0])
    train = torch.tensor([True] * 6 + [False] * 2)
    assert analysis.token_identity_accuracy(ids, labels, train) == 1.0             # 5 -> 1, 6 -> 0
    assert analysis.token_identity_accuracy(ids, 1 - labels, train) == 1.0


def test_random_token_labels_give_each_id_one_label_half_the_ids_each_and_are_seeded():
    ids = torch.tensor([9, 4, 9, 7, 4, 3, 9, 7])
    labels = analysis.random_token_labels(ids, seed=0)
    per_id = {}
    for i, label in zip(ids.tolist(), labels.tolist()):
        assert per_id.setdefault(i, label) == label                               # same id, same label
    assert sorted(per_id.values()) == [0, 0, 1, 1]
    assert labels.tolist() == analysis.random_token_labels(ids, seed=0).tolist()


def test_prefix_scores_are_running_means_of_the_log_ratio_after_bos():
    classifier = analysis.UnigramClassifier(torch.tensor([0.0, 9.0, 1.0, -3.0]))
    scores = classifier.prefix_scores(torch.tensor([[1, 2, 3, 2]]))
    torch.testing.assert_close(scores, torch.tensor([[0.0, 1.0, -1.0, -1 / 3]]))


def test_word_tokens_mask_digits_punctuation_and_control_pieces(tok):
    words = analysis.word_tokens(tok, tok.vocab_size)
    assert not words[tok.bos_id] and not words[3]                                 # <s>, <0x00>
    for text, expected in (("the", True), ("1", False), ("(", False)):
        ids = tok.encode(text, bos=False)
        assert all(bool(words[i]) == expected for i in ids if tok.id_to_piece(i) != "\u2581"), (text, ids)
    classifier = analysis.UnigramClassifier(torch.arange(tok.vocab_size, dtype=torch.float))
    digit = tok.encode("1", bos=False)[-1]
    assert classifier.score([digit], keep=words) != classifier.score([digit]) and classifier.score([digit], keep=words) != 0


def test_repetition_share_counts_tokens_seen_in_the_last_four():
    assert analysis.repetition_share([5, 5, 5, 5, 5]) == 1.0
    assert analysis.repetition_share([1, 2, 3, 4, 5]) == 0.0
    assert analysis.repetition_share([1, 2, 3, 4, 5, 1]) == 0.0                   # 1 is five tokens back
    assert analysis.repetition_share([1, 2, 1]) == 0.5


def test_mean_difference_and_its_error():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    assert analysis.mean_difference(x, torch.tensor([1, 1, 0])).tolist() == [2.0, -2.0]
    with pytest.raises(ValueError, match="both labels"):
        analysis.mean_difference(x, torch.ones(3, dtype=torch.long))


def test_steering_hook_adds_the_vector_everywhere_but_bos(model):
    v = torch.randn(model.cfg.dim)
    name = "layers.1.hook_resid_post"
    tokens = torch.tensor([[1, 415, 907, 302]])
    _, clean = model.run_with_cache(tokens, names=[name])
    with model.hooks(analysis.steering_hooks(1, v, 0.5)):
        _, steered = model.run_with_cache(tokens, names=[name])
    delta = steered[name] - clean[name]                                            # (1, 4, dim)
    assert torch.equal(delta[0, 0], torch.zeros_like(v))
    torch.testing.assert_close(delta[0, 1:], (0.5 * v).expand(3, -1), rtol=1e-5, atol=1e-5)


def test_steering_during_cached_generation_steers_each_position_once(model):
    v = torch.randn(model.cfg.dim)
    prompt = [1, 415, 907]
    seen = []
    hooks = analysis.steering_hooks(1, v, 0.0)
    with model.hooks(hooks + [(hooks[0][0], lambda x, hook: seen.append(tuple(x.shape)))]):
        zero = me.generate(model, prompt, max_new_tokens=5)
    assert seen == [(1, 3, model.cfg.dim)] + [(1, 1, model.cfg.dim)] * 4
    assert zero == me.generate(model, prompt, max_new_tokens=5)                    # scale 0 changes nothing


def test_greedy_continuations_equal_generate_row_by_row_with_a_hook(model):
    prompts = torch.tensor([[1, 415, 907], [1, 661, 349]])
    hooks = analysis.steering_hooks(1, torch.randn(model.cfg.dim), 1.0)
    with model.hooks(hooks):
        batched = generation.greedy_continuations(model, prompts, max_new_tokens=12)
        one_by_one = [me.generate(model, row, max_new_tokens=12) for row in prompts.tolist()]
    assert batched == one_by_one


def test_unigram_classifier_scores_by_log_likelihood_ratio():
    ids = torch.tensor([7, 7, 7, 8, 9, 9, 9, 8])
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    classifier = analysis.UnigramClassifier.fit(ids, labels, vocab_size=10)
    assert classifier.score([7, 7]) > 0 > classifier.score([9])
    assert classifier.score([8]) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ the lesson's claims on the default

@pytest.fixture(scope="module")
def setup(model, tok, records):
    """The notebook's data: 32-token windows (at most 300 per source), every 4th passage for testing."""
    windows = analysis.passage_windows(tok, records, 32)
    keep = []
    for c in (0, 1):
        mine = torch.nonzero(windows.label == c).flatten()
        keep.append(mine[torch.linspace(0, len(mine) - 1, min(300, len(mine))).long()])
    keep = torch.cat(keep)
    windows = analysis.PassageWindows(*(t[keep] for t in (windows.tokens, windows.passage, windows.label,
                                                          windows.quoted)))
    train_window = ~(torch.arange(len(records)) % 4 == 3)[windows.passage]
    points = ["hook_embed"] + [f"layers.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    resid = analysis.residual_stack(model, windows.tokens, points)
    return windows, train_window, points, resid


def test_probe_chosen_on_validation_beats_current_token_classifiers_control_and_prefix(setup, records, tok):
    windows, train_window, points, resid = setup
    per_token = lambda per_window: per_window[:, None].expand_as(windows.tokens)
    shared = analysis.shared_token_mask(windows.tokens, windows.label)
    y = per_token(windows.label)[shared]
    train = per_token(train_window)[shared]
    ids = windows.tokens[shared]
    fit = ~per_token((torch.arange(len(records)) % 4 == 2)[windows.passage])[shared]
    validation = [analysis.probe_accuracy(resid[k][shared][train], y[train], fit[train]) for k in range(len(points))]
    best = max(range(len(points)), key=validation.__getitem__)
    probe = analysis.probe_accuracy(resid[best][shared], y, train)
    current_token = max(analysis.token_identity_accuracy(ids, y, train),
                        analysis.probe_accuracy(resid[0][shared], y, train))
    control = analysis.probe_accuracy(resid[best][shared], analysis.random_token_labels(ids, seed=0), train)
    embedding_control = analysis.probe_accuracy(resid[0][shared], analysis.random_token_labels(ids, seed=0), train)
    labels = per_token(windows.label)[train_window][:, 1:].flatten()
    classifier = analysis.UnigramClassifier.fit(windows.tokens[train_window][:, 1:].flatten(), labels,
                                                tok.vocab_size)
    prefix = analysis.balanced_accuracy(classifier.prefix_scores(windows.tokens)[shared][~train], y[~train])
    assert probe >= current_token + 0.10, (probe, current_token)
    assert probe > control and embedding_control > 0.75, (probe, control, embedding_control)  # the control can be met
    assert probe > prefix, (probe, prefix)


PROMPTS = ["It is", "When the", "If you", "We have", "This is", "There was", "One of", "He said", "She was", "They are",
           "In the", "At the", "For the", "And then", "But the", "So we", "After the", "Before the", "Then he", "All the",
           "Some of", "Many of", "I think", "You can", "What is", "How do", "Where the", "Why do", "The first",
           "The man", "The time", "Now the", "On the", "From the", "With the", "As the", "By the", "Every day",
           "No one", "My friend"]


def test_steering_moves_the_words_of_most_prompts_beyond_a_same_norm_random_vector(setup, model, tok):
    windows, train_window, points, resid = setup
    labels = windows.label[:, None].expand_as(windows.tokens)[train_window][:, 1:].flatten()
    classifier = analysis.UnigramClassifier.fit(windows.tokens[train_window][:, 1:].flatten(), labels,
                                                model.cfg.vocab_size)
    words = analysis.word_tokens(tok, model.cfg.vocab_size)
    prompts = torch.tensor([tok.encode(p, bos=True) for p in PROMPTS])           # (40, 3)
    n = len(prompts)
    unsteered = torch.tensor([classifier.score(t, keep=words)
                              for t in generation.greedy_continuations(model, prompts, max_new_tokens=24)])
    for layer in (1, 2):
        x = resid[points.index(f"layers.{layer}.hook_resid_post")][train_window][:, 1:]
        vector = analysis.mean_difference(x.flatten(0, 1), labels)
        per_row = torch.cat([vector.expand(n, -1), analysis.random_directions(n, vector, seed=layer)])[:, None]
        with model.hooks(analysis.steering_hooks(layer, per_row, 0.5)):
            texts = generation.greedy_continuations(model, torch.cat([prompts, prompts]), max_new_tokens=24)
        scores = torch.tensor([classifier.score(t, keep=words) for t in texts])     # (80,) nan: no word token
        moved, paired = scores[:n] - unsteered, scores[:n] - scores[n:]              # (40,) each
        moved = analysis.Distribution.of(moved[~moved.isnan()])                      # the prompts that wrote a word,
        paired = analysis.Distribution.of(paired[~paired.isnan()])                   # as notebook 12 reads them
        assert moved.holds(mean_at_least=0.5) and moved.quantile(0.25) > 0, (layer, moved.summary())
        assert paired.holds(mean_at_least=1 / 3), (layer, paired.summary())


def test_passage_split_holds_out_a_quarter_of_each_labels_passages_by_seed():
    windows = analysis.PassageWindows(torch.zeros(40, 3, dtype=torch.long), torch.arange(40) // 2,
                                      (torch.arange(40) // 2 >= 8).long(), torch.zeros(40, 3, dtype=torch.bool))
    train = analysis.passage_split(windows, seed=1)
    held = windows.passage[~train].unique()
    assert (held < 8).sum() == 2 and (held >= 8).sum() == 3                         # 25% of 8 and of 12 passages
    assert all(bool(train[windows.passage == p].all() or (~train[windows.passage == p]).all()) for p in range(20))
    assert torch.equal(train, analysis.passage_split(windows, seed=1))
    assert not torch.equal(train, analysis.passage_split(windows, seed=2))
    with pytest.raises(ValueError, match="too few"):
        analysis.passage_split(windows, seed=0, test_share=1.0)


def test_random_directions_have_the_vectors_norm_and_steer_row_by_row(model):
    vector = torch.arange(model.cfg.dim, dtype=torch.float32)
    random = analysis.random_directions(5, vector, seed=3)
    assert random.shape == (5, model.cfg.dim)
    assert torch.allclose(random.norm(dim=1), vector.norm().expand(5))
    rows = torch.stack([torch.zeros(3, model.cfg.dim), torch.ones(3, model.cfg.dim)])      # (2, 3, dim)
    hooks = analysis.steering_hooks(1, random[:2, None], 2.0)
    assert torch.equal(hooks[0][1](rows, None)[:, 1:], rows[:, 1:] + 2.0 * random[:2, None])
    assert torch.equal(hooks[0][1](rows, None)[:, 0], rows[:, 0])


def test_direction_ablation_sets_the_component_to_the_value_and_keeps_the_rest():
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0))
    direction = torch.tensor([3.0, 4.0, 0, 0, 0, 0])                                # normalised inside
    (name, ablate), = analysis.direction_ablation_hooks(2, direction, 0.5)
    out = ablate(x, None)
    assert name == "layers.2.hook_resid_post"
    assert torch.allclose(out[:, 1:] @ (direction / 5), torch.full((2, 3), 0.5))
    assert torch.equal(out[:, :, 2:], x[:, :, 2:]) and torch.equal(out[:, 0], x[:, 0])


def test_predicted_scores_are_the_expected_log_ratio_of_the_next_token(model):
    tokens = torch.randint(3, model.cfg.vocab_size, (3, 6), generator=torch.Generator().manual_seed(1))
    log_ratio = torch.randn(model.cfg.vocab_size, generator=torch.Generator().manual_seed(2))
    expected = (model(tokens)[:, 1:].softmax(-1) @ log_ratio).mean(1)
    assert torch.allclose(analysis.predicted_scores(model, tokens, log_ratio, batch=2), expected, atol=1e-5)
