"""``python -m custom_nets.preprocess DATASET_DIR OUT_DIR [--task T] [--reference S]`` (a fire CLI; ``--help``)."""

import fire

from custom_nets.preprocess.dataset import preprocess
from custom_nets.utils import refusing


def main() -> None:
    fire.Fire(refusing(preprocess), name="custom_nets.preprocess")


if __name__ == "__main__":
    main()
