# vitcycle developer commands. `make install` builds .venv; every other target installs first if needed.
VENV     ?= .venv
PY       := $(VENV)/bin/python
VITCYCLE := $(VENV)/bin/vitcycle
STAMP    := $(VENV)/.installed-stamp
# These exact releases lie on the build machines' local disk; an unpinned torch pulls a multi-GB download.
TORCH    ?= torch==2.14.1 torchvision==0.29.1

SYNTH    ?= data/synthetic
QS_RUN   := runs/quickstart
TEST_A   ?= $(SYNTH)/valA
TEST_B   ?= $(SYNTH)/valB

# Real data on a CPU: the U-GAT-IT selfie2anime folders (README: how to get them), or e.g.
# S2A=../shared/data/selfie2anime_128 on the development machines.
S2A      ?= data/selfie2anime
S2A_RUN  := runs/selfie2anime_cpu
S2A_TEST := $(S2A_RUN)/split/test_a.txt $(S2A_RUN)/split/test_b.txt
# One judge by default; JUDGE_SEEDS="0 1 2" trains an ensemble (their mean probability judges, eval shows each one's share).
JUDGE_SEEDS ?= 0
SEED     ?= 0

.PHONY: install test lint quickstart pretrain-quickstart selfie2anime-judge selfie2anime-cpu selfie2anime-cpu128 \
	selfie2anime-seeds s2a-eval fit eval bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check vitcycle tests benchmarks

# Built-in data, a short CPU training, translated validation images, a grid PNG and the paired metric.
quickstart: install
	test -f $(SYNTH)/pairs_val.csv || $(VITCYCLE) data synth --out $(SYNTH) --n-train 900 --n-val 100 --size 64 --seed 0
	$(VITCYCLE) fit --config configs/quickstart.yaml \
		--data.dir_a $(SYNTH)/trainA --data.dir_b $(SYNTH)/trainB --data.val_pairs $(SYNTH)/pairs_val.csv
	$(VITCYCLE) translate --ckpt $(QS_RUN)/checkpoints/last.ckpt --input $(SYNTH)/valA --output $(QS_RUN)/valA_to_B
	$(VITCYCLE) eval --ckpt $(QS_RUN)/checkpoints/last.ckpt --test-a $(SYNTH)/valA --test-b $(SYNTH)/valB \
		--paired-only --grid $(QS_RUN)/grid.png --out $(QS_RUN)/eval.json

# Masked-patch inpainting pretraining of the quickstart generator on the built-in data (CPU, minutes).
pretrain-quickstart: install
	test -f $(SYNTH)/pairs_val.csv || $(VITCYCLE) data synth --out $(SYNTH) --n-train 900 --n-val 100 --size 64 --seed 0
	$(VITCYCLE) pretrain --config configs/pretrain_quickstart.yaml \
		--data.dir_a $(SYNTH)/trainA --data.dir_b $(SYNTH)/trainB --data.val_pairs $(SYNTH)/pairs_val.csv

# A held-out split and a judge (both seed 0, kept and reused by every real-data target).
selfie2anime-judge: install
	$(VITCYCLE) data split --dir-a $(S2A)/trainA --dir-b $(S2A)/trainB --out $(S2A_RUN)/split --n-test 200 --seed 0
	test -f $(S2A_RUN)/judge.pt || $(VITCYCLE) judge fit --dir-a $(S2A)/trainA --dir-b $(S2A)/trainB \
		--holdout $(S2A_TEST) --seed $(JUDGE_SEEDS) --out $(S2A_RUN)/judge.pt

# 4000 batches at 64 px (the config's bound) with the GAN seed SEED, the domain-score table and a grid of
# best.ckpt (picked on the validation split, never on the held-out faces).
selfie2anime-cpu: selfie2anime-judge
	$(VITCYCLE) fit --config configs/selfie2anime_cpu.yaml --seed_everything $(SEED) \
		--trainer.default_root_dir $(S2A_RUN)/seed$(SEED) --data.dir_a $(S2A)/trainA --data.dir_b $(S2A)/trainB
	$(MAKE) --no-print-directory s2a-eval RUN=$(S2A_RUN)/seed$(SEED)

# The same recipe at 128 px (configs/selfie2anime_cpu128.yaml), 4000 batches, the same split, judge and eval.
selfie2anime-cpu128: selfie2anime-judge
	$(VITCYCLE) fit --config configs/selfie2anime_cpu.yaml --config configs/selfie2anime_cpu128.yaml \
		--seed_everything $(SEED) --trainer.default_root_dir $(S2A_RUN)/128px_seed$(SEED) \
		--data.dir_a $(S2A)/trainA --data.dir_b $(S2A)/trainB
	$(MAKE) --no-print-directory s2a-eval RUN=$(S2A_RUN)/128px_seed$(SEED)

s2a-eval:
	$(VITCYCLE) eval --ckpt $(RUN)/checkpoints/best.ckpt --test-a $(S2A_RUN)/split/test_a.txt \
		--test-b $(S2A_RUN)/split/test_b.txt --judge $(S2A_RUN)/judge.pt --no-fid-kid \
		--grid $(RUN)/grid.png --out $(RUN)/eval.json

# The recipe on GAN seeds 0-3, two at a time on one thread each, and one table: each seed, the min and the mean.
selfie2anime-seeds: install
	$(PY) benchmarks/experiments/run.py benchmarks/experiments/recipe.yaml --seeds 0 1 2 3 --s2a $(S2A) \
		--judge-seeds $(JUDGE_SEEDS)

fit: install
	$(VITCYCLE) fit --config configs/cycle.yaml

# make eval CKPT=path/to.ckpt [TEST_A=dir TEST_B=dir] [EVAL_ARGS='--paired-only --inception-weights PATH']
eval: install
	@test -n "$(CKPT)" || { echo "usage: make eval CKPT=path/to.ckpt [TEST_A=dir TEST_B=dir] [EVAL_ARGS=...]"; exit 2; }
	$(VITCYCLE) eval --ckpt $(CKPT) --test-a $(TEST_A) --test-b $(TEST_B) $(EVAL_ARGS)

bench: install
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_translate.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
