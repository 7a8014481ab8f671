"""Run the whole mission on one model and write an HTML report (the shipped model by default).

Offline and a few minutes on a 2-core CPU for the shipped 32 px testbed model: samples, SeFa,
InterFaceGAN boundaries, conditional editing, HiGAN's layer ranking, inversion and editing of
held-out images, multi-code restoration and FairGen. Open OUT/index.html.
"""

from jgan.demo import run_demo


def add_parser(parser):
    parser.add_argument(
        "--model", help="checkpoint file or jgan model directory (default: the shipped model)"
    )
    parser.add_argument("--out", default="jgan-demo", help="new report directory (jgan-demo)")
    parser.add_argument(
        "--predictor",
        help="what names the attributes: 'package.module:function', 'file.py:function' or a "
        "classifier model directory (default: the model's classifier, else mean colour)",
    )
    parser.add_argument(
        "--images", help="folder or file of held-out images to invert (default: the testbed's "
        "test split for testbed models, else images of held-out seeds)",
    )  # fmt: skip
    parser.add_argument(
        "--lpips",
        nargs=2,
        metavar=("VGG16", "HEADS"),
        help="report LPIPS (torchvision VGG16 + lpips/weights/v0.1/vgg.pth)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def run(args):
    path = run_demo(
        args.out,
        args.model,
        predictor=args.predictor,
        images=args.images,
        lpips=args.lpips,
        overwrite=args.overwrite,
    )
    print(f"wrote the demo report {path}")
