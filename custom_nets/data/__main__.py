"""``python -m custom_nets.data synthesize | datalist | montage ...`` (a fire CLI; ``--help`` on each)."""

import functools

import fire

from custom_nets.data.datalist import write_datalist
from custom_nets.data.errors import DataError
from custom_nets.data.montage import montage
from custom_nets.data.synthetic import synthesize
from custom_nets.data.tasks import TaskError
from custom_nets.utils import refuse


def _command(function):
    """fire prints return values; the commands report what they wrote themselves. A problem with the data or the
    arguments is one line on stderr and exit code 2, not a traceback."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            function(*args, **kwargs)
        except (DataError, TaskError, ValueError, FileNotFoundError) as error:
            refuse(str(error).replace("\n", " "))

    return run


def main() -> None:
    fire.Fire(
        {
            name: _command(f)
            for name, f in (("synthesize", synthesize), ("datalist", write_datalist), ("montage", montage))
        }
    )


if __name__ == "__main__":
    main()
