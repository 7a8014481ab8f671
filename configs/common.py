"""Config pieces the trainers' configs share."""

import ml_collections


def tfds_data(name, **fields):
    """The `data` section for the tfds dataset `name` (array_record, prepared offline under
    `data_dir` or at `path`), train split, shuffled and mirrored; `fields` add or replace
    entries (e.g. `label_keys`, `crop`, `size`)."""
    placeholder = ml_collections.config_dict.placeholder
    return ml_collections.ConfigDict(
        dict(
            source="tfds",
            name=name,
            split="train",
            data_dir=placeholder(str),
            path=placeholder(str),
            resolution=placeholder(int),
            image_key="image",
            size=1024,
            shuffle=True,
            mirror=True,
        )
        | fields
    )
