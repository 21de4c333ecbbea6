# The README's two commands: `make lab` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed on its own, first and deliberately: left to a dependency resolver on a machine
# without a GPU, plain `torch` can pull a multi-GB CUDA build. GPU users: see the README.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
INSTALLED := $(VENV)/.installed
BOOK_INSTALLED := $(VENV)/.installed-book
# Which notebooks `make notebooks` syncs and re-executes: all, or e.g. `make notebooks NB=09`.
NB ?= [0-9]

.PHONY: lab test install clean memory-bench notebooks real-shape-notebooks notebooks-other-cpu book book-test

install: $(INSTALLED)

# mistral_edu/__init__.py holds the package version, which the notebooks check: a new version reinstalls.
$(INSTALLED): pyproject.toml mistral_edu/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

lab: $(INSTALLED)
	$(BIN)/jupyter lab notebooks/

# nbval runs every notebook and compares each cell's text with its committed output. The notebooks run on the
# CPU, where those outputs were made: CUDA_VISIBLE_DEVICES= hides every GPU from the notebooks' kernels (a GPU's
# kernels round differently), while the tests in tests/ still see it and run their CUDA checks.
NOTEBOOK_ENV := env CUDA_VISIBLE_DEVICES=
NBVAL := $(BIN)/python -m pytest $(wildcard notebooks/*.ipynb) --nbval --nbval-current-env \
	--nbval-sanitize-with notebooks/sanitize.cfg

# The book's test (tests/test_book.py, marked `book`) builds the site and loads every page: `make book-test` runs it.
test: $(INSTALLED)
	$(BIN)/python -m pytest tests -m "not book"
	$(NOTEBOOK_ENV) $(NBVAL)

# Not part of `make test` (CI runs it after): nbval again with PyTorch's CPU kernels forced to other instruction
# sets (ATEN_CPU_CAPABILITY), so that a digit only this machine's kernels print is never committed.
notebooks-other-cpu: $(INSTALLED)
	$(BIN)/python tests/notebooks_other_cpu.py $(NOTEBOOK_ENV) $(NBVAL)

# Sync every notebooks/src/NN_*.md with its notebooks/NN_*.ipynb (jupytext pairing, notebooks/jupytext.toml:
# the .md is touched first so that its cells win even when a checkout left the .ipynb newer; outputs and cell
# ids are kept), then re-execute every notebook in place with
# this environment's kernel. Lessons are written in the .md sources; tests/test_notebook_sources.py fails
# when a source and its notebook disagree. The widgets' saved state is dropped (tens of kB per notebook;
# the explorers need a running kernel anyway); nbclient's store_widget_state=False would skip it but breaks
# its Output widgets.
notebooks: $(INSTALLED)
	touch notebooks/src/$(NB)*.md
	$(BIN)/jupytext --sync notebooks/src/$(NB)*.md
	for nb in notebooks/$(NB)*.ipynb; do \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 \
			--ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
		$(BIN)/python -c "import nbformat, sys; nb = nbformat.read(sys.argv[1], 4); \
			nb.metadata.pop('widgets', None); nbformat.write(nb, sys.argv[1])" "$$nb" || exit 1; \
	done

# The committed, executed notebooks as a static site in build/book/ (git-ignored; nothing is re-executed), for
# reading offline from the folder or any static file server. Its packages are the [book] extra, so `make lab`
# installs nothing of it. `make book-test` builds it afresh in a temporary folder and checks every page in
# Debian's Chromium with outside requests blocked (README: "The book site").
$(BOOK_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e ".[book]"
	touch $(BOOK_INSTALLED)

book: $(BOOK_INSTALLED)
	$(BIN)/python book/build.py

book-test: $(BOOK_INSTALLED)
	$(BIN)/python -m pytest -m book tests/test_book.py

# Not part of `make test`: writes a 29 GB synthetic full-size checkpoint (needs 30+ GB of free disk
# and 15.5 GB of free RAM), measures peak RSS of loading, streaming and int8, then deletes it.
memory-bench: $(INSTALLED)
	$(BIN)/python benchmarks/full_size_memory.py

# Not part of `make test`: writes a 14.5 GB synthetic checkpoint with v0.2's exact names and shapes
# to a temporary folder and executes every notebook against it (MISTRAL_EDU_WEIGHTS), printing each
# one's time and peak RSS; the committed notebooks are not modified. Needs ~15 GB of disk and RAM.
real-shape-notebooks: $(INSTALLED)
	$(BIN)/python benchmarks/real_shape_notebooks.py

clean:
	rm -rf $(VENV)
