"""``python -m custom_nets.preprocess DATASET_DIR OUT_DIR [--task T] [--reference S]`` (a fire CLI; ``--help``)."""

import functools

import fire

from custom_nets.data.errors import DataError
from custom_nets.data.tasks import TaskError
from custom_nets.preprocess.dataset import preprocess
from custom_nets.utils import refuse


@functools.wraps(preprocess)
def command(*args, **kwargs):
    """A refusal (a folder, task or argument that cannot be used) is one line on stderr and exit code 2."""
    try:
        preprocess(*args, **kwargs)
    except (DataError, TaskError, ValueError, FileNotFoundError) as error:
        refuse(str(error).replace("\n", " "))


def main() -> None:
    fire.Fire(command)


if __name__ == "__main__":
    main()
