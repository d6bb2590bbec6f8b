"""``python -m custom_nets.data synthesize | datalist | montage ...`` (a fire CLI; ``--help`` on each)."""

import fire

from custom_nets.data.datalist import write_datalist
from custom_nets.data.montage import montage
from custom_nets.data.synthetic import synthesize
from custom_nets.utils import refusing


def main() -> None:
    fire.Fire(
        {
            name: refusing(f)
            for name, f in (("synthesize", synthesize), ("datalist", write_datalist), ("montage", montage))
        },
        name="custom_nets.data",
    )


if __name__ == "__main__":
    main()
