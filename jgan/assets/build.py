"""Assembles the shipped testbed model from the model directories of its three training runs.

    python -m jgan.assets.build runs/testbed/model runs/testbed-encoder/model \
        runs/testbed-classifier/model

Keeps the EMA generator of the GAN run, the encoder of the encoder run (trained against that
generator) and the classifier; the discriminator, raw generator and VGG stay out of the package.
"""

import argparse
import os

from jgan.bundle import Bundle, read_model_dir, save_model_dir
from jgan.errors import InputError

ASSETS = os.path.dirname(os.path.abspath(__file__))


def build(gan_dir, encoder_dir, classifier_dir, out=None):
    """Writes the combined model directory `out` (replacing it) and returns its size in bytes."""
    out = out or os.path.join(ASSETS, "testbed")
    gan, encoder, classifier = (read_model_dir(p) for p in (gan_dir, encoder_dir, classifier_dir))
    for path, bundle, role in (
        (gan_dir, gan, "generator"),
        (encoder_dir, encoder, "encoder"),
        (classifier_dir, classifier, "classifier"),
    ):
        if getattr(bundle, role) is None:
            raise InputError(f"{path} holds no {role}")
    combined = Bundle(
        arch=gan.arch,
        generator=gan.generator,
        encoder=encoder.encoder,
        classifier=classifier.classifier,
        source="jgan testbed model (see jgan/assets/testbed_model_card.md)",
    )
    save_model_dir(combined, out, overwrite=True)
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gan", help="model directory of the StyleGAN2 run")
    parser.add_argument("encoder", help="model directory of the encoder run")
    parser.add_argument("classifier", help="model directory of the classifier run")
    args = parser.parse_args(argv)
    size = build(args.gan, args.encoder, args.classifier)
    print(f"wrote {os.path.join(ASSETS, 'testbed')} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
