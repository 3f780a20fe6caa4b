"""Every default of experiments/koloskova2025 in one place."""

DATASETS = ("mnist_5k", "digits", "cifar10")
EPSILONS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
DELTA = 1e-5
SEEDS = (0, 1, 2, 3, 4)
FORGET_FRACTION = 0.10      # the paper's setting
VAL_FRACTION = 0.10         # carved from train; every choice and every stop uses it, never test
TEST_FRACTION = 0.20        # mnist_5k: 4,000 / 1,000 train / test
HIDDEN = 128                # MLP d-128-10
BATCH = 64
LR = 1e-3                   # Adam, the retraining and every noiseless phase
EPOCHS = 40                 # retraining's reference accuracy is its 40-epoch accuracy
TARGET_GAP = 0.03           # target = retraining's 40-epoch validation accuracy - 3 points
EVAL_EVERY = 10             # steps between validation checks (the compute-to-target grain)

# noisy fine-tuning (Koloskova et al.): C_0 and the post-clip radius; the calibrated noise
# dominates the 101,770-parameter MLP at every epsilon of the grid, so the model is clipped
# back to the norm of a fresh initialisation before the noiseless phase (post-processing)
INIT_CLIP = 10.0
POST_CLIP = 12.0
GRADIENT_CLIPPING = {"grad_clip": 1.0, "lr": 0.5, "weight_decay": 0.0}
MODEL_CLIPPING = {"model_clip": 10.0, "init_sigma_factor": 1.0, "sigma_factor": 1.0, "lr": 0.1}
NFT_BATCH = 64
MAX_NFT_STEPS = 400         # cap of the noisy phase (model clipping: larger sigma if needed)

# DP-SGD with group privacy over the forget set (the paper's baseline), full batches: a group
# of k rows moves the clipped sum by k C, so the accounting is exact (no group lemma)
DPSGD = {"steps": 5, "clip": 1.0, "lr": 1e-2}

# frozen extractor + certified head (Guo et al. public-extractor setting)
PUBLIC_FRACTION = 0.25      # of train: the public split the extractor is trained on
HEAD = {"lam": 1e-3, "sigma": 1.0, "epsilon": 1.0, "delta": 1e-5, "remeasure": True,
        "auto_retrain": True}
EXTRACTOR_EPOCHS = 30

CHANCE_MARGIN = 0.05        # "near chance": test accuracy within 5 points of 1/K

FAST = {"seeds": (0,), "epsilons": (1.0, 20.0), "epochs": 4, "n_train": 500, "n_test": 200,
        "extractor_epochs": 3, "hidden": 32}
