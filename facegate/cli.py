"""`facegate`: the command-line tool.

    facegate prepare                      prepare every known model into the cache (make setup runs it)
    facegate embed IMAGE...               one JSON line per image: faces, landmarks, embeddings
    facegate compare IMAGE_A IMAGE_B      distance between the main faces and same/different
    facegate eval lfw --data D --pairs F  the LFW verification protocol through our pipeline
    facegate calibrate --data D --pairs F thresholds for target false-accept rates (all pairs of F's images)
    facegate cluster FACES.jsonl          group the faces of `facegate embed` output into likely-same people

    Talking to a running stack (the gateway, default 127.0.0.1:50050):
    facegate enroll --id ID [--name N] IMAGE...   enroll a person from photos
    facegate identify IMAGE...                    decisions for photos, each shown to a camera briefly
    facegate camera --door D --source URL|FILE|N  edge agent: stream a camera to the gateway
    facegate fleet --agent-image IMAGE            on Kubernetes: one camera agent per door of the doors file
    facegate watch [--door D]                     every decision as it is made (JSON lines)
    facegate events [--door D] [--since 1h]       decisions from the audit log
    facegate events --kind admin                  who enrolled, erased or changed doors, and when

    Talking to a matcher (default 127.0.0.1:50053):
    facegate gallery keygen KEY_FILE              a key pair to encrypt exports to (age)
    facegate gallery export FILE --recipient age1...   every identity and template, encrypted
    facegate gallery import FILE --identity KEY_FILE   enroll them again (into an empty gallery)
    facegate gallery reembed --photos DIR --gateway G  enrol them again with another model, from kept photos

    Certificates (every connection is mutual TLS; callers pass --tls-dir or FACEGATE_TLS_DIR):
    facegate certs init DIR                       a local CA
    facegate certs issue --ca DIR --out DIR --service gateway|--camera D --site S|--user NAME|...
    facegate tokens keygen DIR                    a bearer-token issuer's key pair
    facegate tokens issue --key F --issuer N --subject ID --scope ROLE   a signed JWT (callers without a
                                                  certificate pass it as --token-file, with --ca-file)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users


def _detector_settings(args: argparse.Namespace) -> Any:
    from services.detector.mtcnn_cascade import DetectorSettings

    return DetectorSettings(min_face_size=args.min_face_size, min_score=args.min_score)


def _pipeline(args: argparse.Namespace) -> Any:
    from facegate.evaluation.pipeline import FacePipeline

    return FacePipeline(model=args.model, detector_settings=_detector_settings(args))


def _face_json(embedded: Any) -> dict[str, Any]:
    face = embedded.face
    return {
        "box": [round(v, 2) for v in face.box],
        "score": round(face.score, 5),
        "landmarks": [[round(x, 2), round(y, 2)] for x, y in face.landmarks],
        "embedding": [round(float(v), 6) for v in embedded.embedding],
    }


def cmd_embed(args: argparse.Namespace) -> int:
    from services.core.images import ImageError, decode_image

    pipeline = _pipeline(args)
    failures = 0
    for name in args.images:
        record: dict[str, Any] = {"file": name, "faces": [], "error": None}
        try:
            image = decode_image(Path(name).read_bytes())
            record["faces"] = [_face_json(f) for f in pipeline.process(image)]
        except (OSError, ImageError) as exc:
            record["error"] = str(exc) if isinstance(exc, ImageError) else f"cannot read file: {exc.strerror or exc}"
            failures += 1
        print(json.dumps(record), flush=True)
    return 1 if failures == len(args.images) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from facegate.evaluation.pipeline import distance
    from services.core.images import ImageError, decode_image

    pipeline = _pipeline(args)
    main_faces = []
    for name in (args.image_a, args.image_b):
        try:
            faces = pipeline.process(decode_image(Path(name).read_bytes()))
        except (OSError, ImageError) as exc:
            print(f"facegate compare: {name}: {exc}", file=sys.stderr)
            return 2
        if not faces:
            print(f"facegate compare: {name}: no face found (try a lower --min-face-size)", file=sys.stderr)
            return 2
        main_faces.append(max(faces, key=lambda f: f.face.size))  # the largest face is the subject
    d = distance(main_faces[0].embedding, main_faces[1].embedding)
    threshold = args.threshold if args.threshold is not None else pipeline.distance_threshold
    verdict = "same" if d <= threshold else "different"
    print(json.dumps({"distance": round(d, 6), "threshold": threshold, "verdict": verdict,
                      "model": pipeline.embedder.card.model_key}))
    return 0


def cmd_eval_lfw(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from facegate.evaluation.lfw import evaluate_lfw

    if not args.data.is_dir() or not args.pairs.is_file():
        print(f"facegate eval lfw: need an LFW image folder (--data {args.data}) and a pairs file "
              f"(--pairs {args.pairs})", file=sys.stderr)
        return 2
    pipeline = _pipeline(args)
    bar = tqdm(unit="img", disable=not sys.stderr.isatty(), desc="embedding")
    started = time.perf_counter()
    report, run = evaluate_lfw(
        pipeline, args.data, args.pairs, limit=args.limit, seed=args.seed,
        progress=bar.update, on_total=lambda n: setattr(bar, "total", n),
    )
    bar.close()
    result = {
        "pairs": report.pairs,
        "images": len(run.embeddings),
        "accuracy": {"mean": report.accuracy_mean, "std": report.accuracy_std,
                     "folds": list(report.fold_accuracies)},
        "auc": report.auc,
        "eer": report.eer,
        "tar_at_far": report.tar_at_far,
        "threshold": report.threshold,
        "missed_faces": len(run.missed),
        "missed_examples": run.missed[:20],
        "fallback": "missed faces were aligned with the mean landmarks of this run (a centre crop)",
        "model": pipeline.embedder.card.model_key,
        "detector": {"min_face_size": args.min_face_size, "min_score": args.min_score},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"LFW {args.pairs.name}: {report.pairs} pairs, {len(run.embeddings)} images, "
          f"{len(run.missed)} faces missed (centre-crop fallback)")
    print(f"  accuracy {100 * report.accuracy_mean:.2f}% +- {100 * report.accuracy_std:.2f} (10-fold)")
    print(f"  AUC {report.auc:.4f}  EER {100 * report.eer:.2f}%  "
          + "  ".join(f"TAR@FAR={k} {100 * v:.1f}%" for k, v in report.tar_at_far.items()))
    print(f"  threshold (mean over folds) {report.threshold:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from facegate.evaluation.calibration import calibrate, pair_distances, plot
    from facegate.evaluation.lfw import embed_images, read_pairs

    if not args.data.is_dir() or not args.pairs.is_file():
        print(f"facegate calibrate: need an image folder (--data {args.data}) and a pairs file (--pairs {args.pairs})",
              file=sys.stderr)
        return 2
    pairs = read_pairs(args.pairs)
    names = sorted({p.first for p in pairs} | {p.second for p in pairs})
    pipeline = _pipeline(args)
    bar = tqdm(total=len(names), unit="img", disable=not sys.stderr.isatty(), desc="embedding")
    run = embed_images(pipeline, args.data, names, bar.update)
    bar.close()
    labels = np.array([name.split("/")[0] for name in names])  # LFW layout: <person>/<person>_NNNN.jpg
    genuine, impostor = pair_distances(np.stack([run.embeddings[n] for n in names]), labels)
    try:
        report = calibrate(genuine, impostor, tuple(args.far))
    except ValueError as exc:
        print(f"facegate calibrate: {exc}", file=sys.stderr)
        return 2
    card = pipeline.embedder.card
    print(f"{card.model_key} on {len(names)} images of {args.pairs.name}: {report.genuine_pairs:,} genuine and "
          f"{report.impostor_pairs:,} impostor pairs; AUC {report.auc:.5f}, EER {100 * report.eer:.2f}%; "
          f"{len(run.missed)} faces missed (centre crop)")
    print("| target FAR | threshold | measured FAR | FRR |")
    print("|---|---|---|---|")
    for point in report.points:
        print(f"| {point.far_target:g} | {point.threshold:.4f} | {point.far:.2e} | {100 * point.frr:.2f}% |")
    if args.json:
        args.json.write_text(json.dumps({"model": card.model_key, "pairs_file": args.pairs.name,
                                         "images": len(names), "missed_faces": len(run.missed),
                                         **report.to_dict()}, indent=2))
    if args.plot:
        plot(report, args.plot, f"{card.model_key} on {args.pairs.name} images")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import numpy as np

    from services.matcher.clustering import MAX_FACES, cluster_faces

    faces, vectors = [], []
    with open(args.faces) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                for index, face in enumerate(record.get("faces") or []):
                    faces.append({"file": record["file"], "face": index, "box": face["box"]})
                    vectors.append(face["embedding"])
            except (ValueError, KeyError, TypeError) as exc:
                print(f"facegate cluster: {args.faces}:{number}: not a `facegate embed` line: {exc}", file=sys.stderr)
                return 2
    if len(vectors) > MAX_FACES:
        print(f"facegate cluster: {len(vectors)} faces; at most {MAX_FACES}", file=sys.stderr)
        return 2
    labels = cluster_faces(np.asarray(vectors, np.float32).reshape(len(vectors), -1), args.max_distance, args.min_size)
    for cluster in sorted(set(labels.tolist()), key=lambda c: (c < 0, c)):
        members = [f for f, label in zip(faces, labels, strict=False) if label == cluster]
        print(json.dumps({"cluster": cluster, "size": len(members), "faces": members}))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from services.detector.networks import flatbuffers
    from services.embedder.models import PREPARERS, load_embedder, prepare_litert, prepare_model

    for name in [args.model] if args.model else sorted(PREPARERS):
        path = prepare_model(name)
        embedder = load_embedder(str(path))
        print(f"model {embedder.card.model_key} ready in {path} (loads in {embedder.load_seconds:.2f} s)")
        lite = prepare_litert(name)  # what the embedder service runs by default
        if lite != path:
            print(f"model {embedder.card.model_key} for LiteRT ready in {lite}")
    flatbuffers()  # the detector's networks for LiteRT, converted once
    print("detector networks (LiteRT) ready")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import random

    import numpy as np

    from facegate.evaluation.calibration import calibrate, pair_distances
    from facegate.evaluation.lfw import read_pairs
    from facegate.training.data import embeddings_of, stacked_crops
    from facegate.training.head import HeadTraining, train_head
    from facegate.training.model_dir import trained_card, write_trained_model
    from services.core import assets
    from services.embedder.models import prepare_model

    if not args.data.is_dir() or not args.pairs.is_file():
        print(f"facegate train: need an image folder (--data {args.data}) and a pairs file naming the training "
              f"people's images (--pairs {args.pairs}, e.g. pairsDevTrain.txt; never the evaluation's)",
              file=sys.stderr)
        return 2
    base = Path(args.model) if Path(args.model).is_dir() else None
    problems = []
    if f"{args.default_far:g}" not in {f"{far:g}" for far in args.far}:
        problems.append(f"--default-far {args.default_far:g} is not among the FARs to calibrate ({args.far})")
    if base is not None and not (base / "saved_model").is_dir():
        problems.append(f"--model {base} is not a SavedModel model directory (a head is trained on one)")
    try:
        settings = HeadTraining(head=args.head, loss=args.loss, margin=args.margin, people=args.people,
                                epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:  # before minutes of embedding and training, not after
        print(f"facegate train: {'; '.join(problems)}", file=sys.stderr)
        return 2
    people = sorted({name.split("/")[0] for pair in read_pairs(args.pairs) for name in (pair.first, pair.second)})
    random.Random(args.seed).shuffle(people)
    people = people[:args.limit_people] if args.limit_people else people
    held_out = set(people[:max(2, round(args.holdout * len(people)))])  # for the card's thresholds only
    names = sorted(str(image.relative_to(args.data)) for person in people
                   for image in (args.data / person).glob("*.jpg"))
    labels = np.array([name.split("/")[0] for name in names])
    train = ~np.isin(labels, sorted(held_out))
    pipeline = _pipeline(args)
    print(f"facegate train: {len(names)} images of {len(people)} people named by {args.pairs.name} "
          f"({len(held_out)} people held out to calibrate); aligning and embedding (cached)", file=sys.stderr)
    crops = stacked_crops(pipeline, args.data, names)
    cache = assets.home() / "cache"
    clean = embeddings_of(pipeline, crops, args.seed, "clean", cache)
    copies = [embeddings_of(pipeline, crops[train], args.seed + 1000 * (c + 1), "augmented", cache)
              for c in range(args.copies)]
    x = np.concatenate([clean[train], *copies])
    y = np.tile(labels[train], 1 + args.copies)
    checkpoints = args.checkpoints or args.out.with_name(args.out.name + ".checkpoints")
    started = time.monotonic()
    try:
        head, _ = train_head(x, y, settings, lambda epoch, loss: print(
            f"epoch {epoch}/{settings.epochs}: loss {loss:.4f} ({time.monotonic() - started:.0f} s)",
            file=sys.stderr), checkpoints=checkpoints)
        genuine, impostor = pair_distances(head.predict(clean[~train], verbose=0), labels[~train])
        before = calibrate(*pair_distances(clean[~train], labels[~train]), tuple(args.far))
        report = calibrate(genuine, impostor, tuple(args.far))
        card = trained_card(pipeline.embedder.card, args.model_id or f"{pipeline.embedder.card.model_id}-"
                            f"{settings.loss}-{settings.head}", report, args.default_far, {
                                "trained_on": f"LFW images of {len(people) - len(held_out)} people named by "
                                              f"{args.pairs.name} (clean and {args.copies} augmented copies)",
                                "loss": settings.loss, "head": settings.head, "margin": f"{settings.margin:g}",
                                "epochs": str(settings.epochs), "seed": str(settings.seed)})
    except ValueError as exc:
        print(f"facegate train: {exc}", file=sys.stderr)
        return 2
    write_trained_model(base or prepare_model(args.model), head, card, args.out)
    print(f"{card.model_key} written to {args.out}; checkpoints in {checkpoints}")
    print(f"on {len(held_out)} held-out people ({report.genuine_pairs} genuine, {report.impostor_pairs} impostor "
          f"pairs): AUC {report.auc:.5f} (the base embedding: {before.auc:.5f}), EER {100 * report.eer:.2f}% "
          f"({100 * before.eer:.2f}%)")
    print("| target FAR | threshold | FRR | the base embedding's FRR |")
    print("|---|---|---|---|")
    for point, pretrained in zip(report.points, before.points, strict=True):
        print(f"| {point.far_target:g} | {point.threshold:.4f} | {100 * point.frr:.2f}% | "
              f"{100 * pretrained.frr:.2f}% |")
    return 0


def representative_crops(pipeline: Any, root: Path, count: int, seed: int) -> Any:
    """Aligned crops of the main face (the largest) of `count` photos drawn (seeded) from the
    folder tree at `root`: what an int8 conversion calibrates its activations on."""
    import random

    import numpy as np

    from services.core.images import decode_image

    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(seed).shuffle(photos)
    crops: list[Any] = []
    for photo in photos:
        if len(crops) == count:
            break
        image = decode_image(photo.read_bytes())
        faces = pipeline.detector.detect([image])[0]
        if faces:
            crops.append(pipeline.align(image, max(faces, key=lambda f: f.size).landmarks))
    return np.stack(crops) if crops else np.zeros((0, 0, 0, 3), np.uint8)


def cmd_tflite(args: argparse.Namespace) -> int:
    from services.embedder.models import load_embedder, prepare_model
    from services.embedder.tflite import convert

    source = Path(args.model) if Path(args.model).is_dir() else prepare_model(args.model)
    if not (source / "saved_model").is_dir():
        print(f"facegate tflite: {source} is not a SavedModel model directory (needs saved_model/)", file=sys.stderr)
        return 2
    representative = None
    if args.precision == "int8":
        if args.representative is None or not args.representative.is_dir():
            print("facegate tflite: int8 needs --representative, a folder of face photos (e.g. LFW images not used "
                  "for evaluation) to calibrate its activations on", file=sys.stderr)
            return 2
        representative = representative_crops(_pipeline(args), args.representative, args.count, args.seed)
        if len(representative) < min(args.count, 50):
            print(f"facegate tflite: only {len(representative)} faces found under {args.representative}; "
                  f"int8 needs at least {min(args.count, 50)}", file=sys.stderr)
            return 2
    from services.core.model_card import bundled_card
    from services.embedder.models import PREPARERS

    known = bundled_card(args.model) if args.model in PREPARERS else None  # the shipped card, as the embedder uses
    card = convert(source, args.out, args.precision, representative, known)
    embedder = load_embedder(str(args.out))
    print(f"{card.model_key} ({args.precision}) written to {args.out} ({(args.out / 'model.tflite').stat().st_size:,} "
          f"bytes; loads in {embedder.load_seconds:.2f} s); serve it with --model {args.out}")
    return 0


def cmd_certs_init(args: argparse.Namespace) -> int:
    from facegate import certs

    try:
        certs.init_ca(args.dir, args.days)
    except certs.CertError as exc:
        print(f"facegate certs init: {exc}", file=sys.stderr)
        return 2
    print(f"{args.dir}: CA created (ca.crt, ca.key; keep ca.key offline in production)")
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from facegate import certs

    kind = next(k for k in certs.KINDS if getattr(args, k.replace("-", "_")))
    try:
        identity = certs.Identity(kind, getattr(args, kind.replace("-", "_")), args.site)
        cert = certs.issue(args.ca, args.out, identity, tuple(args.dns), tuple(args.ip), args.hours)
    except certs.CertError as exc:
        print(f"facegate certs issue: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {identity.spiffe_id}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_tokens_keygen(args: argparse.Namespace) -> int:
    from facegate import tokens

    try:
        public = tokens.keygen(args.dir)
    except tokens.TokenIssueError as exc:
        print(f"facegate tokens keygen: {exc}", file=sys.stderr)
        return 2
    print(f"{args.dir}: {tokens.KEY} (keep it with the issuer) and {public.name} (list it under token_issuers in "
          "the access policy)")
    return 0


def cmd_console_add_user(args: argparse.Namespace) -> int:
    from services.console.accounts import AccountError, Accounts

    accounts = Accounts(args.db)
    try:
        password = accounts.reset_password(args.username) if args.reset else \
            accounts.add(args.username, args.role, created_by="facegate console (command line)")
    except AccountError as exc:
        print(f"facegate console: {exc}", file=sys.stderr)
        return 2
    finally:
        accounts.close()
    print(f"{args.username}: one-time password {password}\n(shown once; it must be changed at the first login)")
    return 0


def cmd_tokens_issue(args: argparse.Namespace) -> int:
    from facegate import tokens

    try:
        print(tokens.issue(args.key, args.issuer, args.subject, args.scope, args.minutes))
    except tokens.TokenIssueError as exc:
        print(f"facegate tokens issue: {exc}", file=sys.stderr)
        return 2
    return 0


def _tls_dir(args: argparse.Namespace) -> Path | None:
    """The caller's certificate directory (None: plaintext, --insecure; or a bearer token)."""
    if args.insecure or (not args.tls_dir and getattr(args, "token_file", "")):
        return None
    if not args.tls_dir:
        raise SystemExit(f"facegate {args.command}: --tls-dir (or FACEGATE_TLS_DIR) is required: a directory with "
                         "your certificate (`facegate certs issue --user NAME`); or --token-file and --ca-file for "
                         "a service's token port; or --insecure for a plaintext stack")
    return Path(args.tls_dir)


def _channel(args: argparse.Namespace, address: str) -> Any:
    """A channel to `address` with the caller's credentials: a certificate, a bearer token, or both."""
    from services.core.channels import blocking_channel
    from services.core.tls import TLSError

    token, ca_file = None, None
    if getattr(args, "token_file", "") and not args.insecure:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise SystemExit(f"facegate {args.command}: --token-file: cannot read {args.token_file} "
                             f"({exc.strerror})") from exc
        if not args.tls_dir and not args.ca_file:
            raise SystemExit(f"facegate {args.command}: --ca-file (or FACEGATE_CA_FILE) is required with a token and "
                             "no --tls-dir: the CA certificate the service's certificate is issued by")
        ca_file = Path(args.ca_file) if args.ca_file else None
    try:
        return blocking_channel(address, _tls_dir(args), token=token, ca_file=ca_file)
    except TLSError as exc:
        raise SystemExit(f"facegate {args.command}: {exc}") from exc


def _gateway(args: argparse.Namespace) -> Any:
    from services.contracts.v1 import gateway_pb2_grpc

    return gateway_pb2_grpc.GatewayStub(_channel(args, args.gateway))


def _encoded_photo(path: str) -> Any:
    from services.core import ndarray
    from services.core.images import decode_image

    return ndarray.encode(decode_image(Path(path).read_bytes()), "jpeg")


def _decision_json(decision: Any) -> str:
    from google.protobuf.json_format import MessageToDict

    return json.dumps(MessageToDict(decision, preserving_proto_field_name=True))


def _rpc_failed(command: str, error: Any) -> int:
    print(f"facegate {command}: {error.code().name}: {error.details()}", file=sys.stderr)
    return 2


def cmd_enroll(args: argparse.Namespace) -> int:
    import grpc

    from services.contracts.v1 import common_pb2, gateway_pb2
    from services.core.images import ImageError

    mode = common_pb2.ENROLL_MODE_ADD_TEMPLATES if args.add else \
        common_pb2.ENROLL_MODE_UPDATE_DETAILS if args.update else common_pb2.ENROLL_MODE_CREATE
    if args.update and args.images:
        print("facegate enroll: --update changes details only: give no photos (add faces with --add)", file=sys.stderr)
        return 2
    if not args.update and not args.images:
        print("facegate enroll: at least one photo is needed", file=sys.stderr)
        return 2
    try:
        images = [_encoded_photo(p) for p in args.images]
    except (OSError, ImageError) as exc:
        print(f"facegate enroll: {exc}", file=sys.stderr)
        return 2
    name = args.name or ("" if args.add or args.update else args.id)
    request = gateway_pb2.EnrollFromImagesRequest(
        identity_id=args.id, display_name=name, site=args.site, groups=args.group, images=images, mode=mode,
        allow_duplicate_of=args.allow_duplicate_of)
    try:
        reply = _gateway(args).EnrollFromImages(request, timeout=args.timeout)
    except grpc.RpcError as exc:
        return _rpc_failed("enroll", exc)
    for path, error in zip(args.images, reply.image_errors, strict=False):
        print(f"{path}: {error or 'enrolled'}")
    print(f"{reply.identity_id}: {reply.templates_added} template(s) added")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    import grpc

    from services.contracts.v1 import gateway_pb2
    from services.core.images import ImageError

    stub = _gateway(args)
    for path in args.images:
        try:
            encoded = _encoded_photo(path)
        except (OSError, ImageError) as exc:
            print(f"facegate identify: {path}: {exc}", file=sys.stderr)
            continue
        frames = []
        for sequence in range(args.frames):  # the photo held in front of the camera for a moment
            frame = gateway_pb2.CameraFrame(door_id=args.door, site=args.site, sequence=sequence, frame=encoded)
            frame.captured_at.FromNanoseconds(time.time_ns() + sequence * 200_000_000)
            frames.append(frame)
        try:  # one stream per photo: a live camera stream would drop photos sent faster than decided
            decisions = list(stub.StreamCamera(iter(frames), timeout=args.timeout))
        except grpc.RpcError as exc:
            return _rpc_failed("identify", exc)
        if not decisions:
            print(json.dumps({"file": path, "decision": None, "reason": "no face found"}))
        for decision in decisions:
            print(json.dumps({"file": path, "decision": json.loads(_decision_json(decision))}))
    return 0


def cmd_camera(args: argparse.Namespace) -> int:
    import grpc

    from facegate.camera import CameraSettings, redact, run

    settings = CameraSettings(door_id=args.door, source=args.source, gateway=args.gateway, tls_dir=_tls_dir(args),
                              site=args.site,
                              fps=args.fps, realtime=not args.fast)
    try:
        sent = run(settings, lambda d: print(_decision_json(d), flush=True))
    except OSError as exc:
        print(f"facegate camera: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        return _rpc_failed("camera", exc)
    except KeyboardInterrupt:
        return 0
    print(f"facegate camera: {sent} frames sent from {redact(args.source)}", file=sys.stderr)
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from facegate.fleet.agents import AgentSettings
    from facegate.fleet.controller import FleetConfigError, FleetSettings, run
    from services.core.server import configure_logging

    configure_logging(args.log_level)
    try:
        settings = FleetSettings(
            namespace=args.namespace, identity=args.identity, doors_configmap=args.doors_configmap,
            doors_key=args.doors_key, status_configmap=args.status_configmap, lease_name=args.lease,
            resync_seconds=args.resync_seconds, lease_seconds=args.lease_seconds, renew_seconds=args.renew_seconds,
            retry_seconds=args.retry_seconds, metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            health_port=args.health_port,
            kubeconfig=args.kubeconfig,
            agents=AgentSettings(image=args.agent_image, gateway=args.gateway, fps=args.agent_fps,
                                 certificate_issuer=args.issuer, issuer_kind=args.issuer_kind,
                                 credentials_secret=args.credentials_secret))
    except ValueError as exc:
        print(f"facegate fleet: {exc}", file=sys.stderr)
        return 2
    try:
        return run(settings)
    except FleetConfigError as exc:
        print(f"facegate fleet: {exc}", file=sys.stderr)
        return 2


def parse_since(text: str) -> int:
    """'90s', '15m', '1h', '2d' ago, or an ISO 8601 time, as nanoseconds since the epoch."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time_ns() - int(float(text[:-1]) * units[text[-1]] * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use 90s, 15m, 1h, 2d or an ISO time like 2026-11-22T08:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return int(moment.timestamp() * 1e9)


def cmd_events(args: argparse.Namespace) -> int:
    import grpc

    from services.contracts.v1 import gateway_pb2

    if args.kind == "admin":
        return _admin_events(args)
    wanted = f"OUTCOME_{args.outcome.upper()}" if args.outcome else None  # by name; None = any
    request = gateway_pb2.ListDecisionsRequest(door_id=args.door, site=args.site, outcome=wanted, limit=args.limit)
    if args.since:
        request.since.FromNanoseconds(args.since)
    try:
        reply = _gateway(args).ListDecisions(request, timeout=args.timeout)
    except grpc.RpcError as exc:
        return _rpc_failed("events", exc)
    for decision in reply.decisions:
        if args.json:
            print(_decision_json(decision))
            continue
        when = decision.decided_at.ToDatetime(tzinfo=datetime.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        outcome = gateway_pb2.Decision.Outcome.Name(decision.outcome).removeprefix("OUTCOME_").lower()
        print(f"{when}  {decision.door_id:16s} {outcome:15s} {decision.identity_id or '-':20s} "
              f"frames={decision.frames}  {decision.reason}")
    return 0


def _admin_events(args: argparse.Namespace) -> int:
    """Admin actions (enrolments, erasures, door-file changes), newest first."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from services.contracts.v1 import gateway_pb2

    try:
        reply = _gateway(args).ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=args.limit),
                                                timeout=args.timeout)
    except grpc.RpcError as exc:
        return _rpc_failed("events", exc)
    for action in reply.actions:
        if args.json:
            print(json.dumps(MessageToDict(action, preserving_proto_field_name=True)))
            continue
        when = action.at.ToDatetime(tzinfo=datetime.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}  {action.action:18s} {action.subject:20s} {action.caller}  {action.detail}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import grpc

    from services.contracts.v1 import gateway_pb2

    try:
        for decision in _gateway(args).WatchDecisions(gateway_pb2.WatchDecisionsRequest(door_ids=args.door)):
            print(_decision_json(decision), flush=True)
    except grpc.RpcError as exc:
        return _rpc_failed("watch", exc)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    import grpc

    from services.contracts.v1 import gateway_pb2

    request = gateway_pb2.EraseIdentityRequest(identity_id=args.id, pseudonymise_decisions=args.pseudonymise,
                                               reason=args.reason)
    try:
        reply = _gateway(args).EraseIdentity(request, timeout=args.timeout)
    except grpc.RpcError as exc:
        return _rpc_failed("erase", exc)
    print(json.dumps({"templates_removed": reply.templates_removed,
                      "decisions_pseudonymised": reply.decisions_pseudonymised, "pseudonym": reply.pseudonym}))
    return 0


def _matcher(args: argparse.Namespace) -> Any:
    from services.contracts.v1 import matcher_pb2_grpc

    return matcher_pb2_grpc.MatcherStub(_channel(args, args.matcher))


def _passphrase(args: argparse.Namespace, confirm: bool) -> str | None:
    """The passphrase of --passphrase-file, or asked for with --passphrase; None if neither."""
    import getpass

    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_text().rstrip("\n")
        except OSError as exc:
            raise SystemExit(f"facegate gallery: --passphrase-file: cannot read it ({exc.strerror})") from exc
    if not args.passphrase:
        return None
    text = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != text:
        raise SystemExit("facegate gallery: the passphrases differ")
    return text


def cmd_gallery_export(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from facegate import gallery_file
    from facegate.certs import write_file
    from services.contracts.v1 import matcher_pb2

    passphrase = _passphrase(args, confirm=True)
    if args.plaintext and (args.recipient or passphrase is not None):
        print("facegate gallery export: --plaintext, or a recipient / passphrase: not both", file=sys.stderr)
        return 2
    try:  # before anything is read from the matcher
        for text in args.recipient:
            gallery_file.recipient(text)
        if passphrase is not None:
            gallery_file.check_passphrase(passphrase)
    except gallery_file.GalleryFileError as exc:
        print(f"facegate gallery export: {exc}", file=sys.stderr)
        return 2
    if not args.recipient and passphrase is None and not args.plaintext:
        print("facegate gallery export: an export holds biometric templates, so it is encrypted: give --recipient "
              "age1... (from `facegate gallery keygen`; repeatable) or --passphrase / --passphrase-file; or "
              "--plaintext to write it unencrypted", file=sys.stderr)
        return 2
    lines = []
    try:
        for item in _matcher(args).ExportIdentities(matcher_pb2.ExportIdentitiesRequest(site=args.site),
                                                   timeout=args.timeout):
            lines.append(json.dumps(MessageToDict(item, preserving_proto_field_name=True)) + "\n")
    except grpc.RpcError as exc:
        return _rpc_failed("gallery export", exc)
    data = "".join(lines).encode()
    try:
        if not args.plaintext:
            data = gallery_file.seal(data, args.recipient, passphrase)
        write_file(args.file, data, 0o600)  # templates: readable by their owner only
    except gallery_file.GalleryFileError as exc:
        print(f"facegate gallery export: {exc}; nothing was written", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"facegate gallery export: cannot write {args.file} ({exc.strerror})", file=sys.stderr)
        return 2
    sealed = "UNENCRYPTED (--plaintext)" if args.plaintext else \
        "encrypted to a passphrase" if passphrase is not None else f"encrypted to {len(args.recipient)} recipient(s)"
    print(f"exported {len(lines)} identities to {args.file}, {sealed}")
    return 0


def _caller_metadata(metadata: Any) -> dict[str, str]:
    """An exported identity's metadata without the keys the matcher keeps itself (look-alikes,
    capture), which an Enroll may not set: they travel as allow_duplicate_of and on the templates."""
    from services.matcher.gallery import CAPTURE, LOOKALIKES

    return {k: v for k, v in metadata.items() if k not in (LOOKALIKES, CAPTURE)}


def _lookalikes(metadata: Any) -> list[str]:
    """The identities an exported identity was acknowledged to resemble at enrolment (twins)."""
    from services.matcher.gallery import LOOKALIKES

    return [other for other in metadata.get(LOOKALIKES, "").split(",") if other]


def cmd_gallery_import(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import ParseDict, ParseError

    from facegate import gallery_file
    from services.contracts.v1 import common_pb2, matcher_pb2
    from services.matcher.gallery import CAPTURE  # how the person's photos were captured (matcher metadata)

    try:
        data = args.file.read_bytes()
        if gallery_file.is_sealed(data):
            data = gallery_file.unseal(data, args.identity, _passphrase(args, confirm=False))
        text = data.decode()
    except OSError as exc:
        print(f"facegate gallery import: cannot read {args.file} ({exc.strerror})", file=sys.stderr)
        return 2
    except (gallery_file.GalleryFileError, UnicodeDecodeError) as exc:
        print(f"facegate gallery import: {args.file}: {exc}", file=sys.stderr)
        return 2
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((number, ParseDict(json.loads(line), matcher_pb2.IdentityExport())))
        except (ValueError, ParseError) as exc:
            print(f"facegate gallery import: {args.file}:{number}: not an exported identity: {exc}",
                  file=sys.stderr)
            return 2
    # Look-alikes acknowledged at enrolment (twins) travel in metadata; either of a pair may come
    # first, so each may resemble the people it names and the people who name it.
    lookalikes: dict[str, set[str]] = {}
    for _, item in items:
        for other in _lookalikes(item.identity.metadata):
            lookalikes.setdefault(item.identity.identity_id, set()).add(other)
            lookalikes.setdefault(other, set()).add(item.identity.identity_id)
    stub = _matcher(args)
    imported = 0
    for number, item in items:
        who = item.identity
        allowed = sorted(lookalikes.get(who.identity_id, set()) | set(args.allow_duplicate_of))
        metadata = _caller_metadata(who.metadata)
        # how the person's photos were captured travels on the templates (not measured: not known)
        for template in item.templates:
            template.capture_flags[:] = [flag for flag in who.metadata.get(CAPTURE, "").split(",") if flag]
            template.capture_measured = CAPTURE in who.metadata
        try:  # CREATE repeats harmlessly: an import stopped half-way can be run again
            stub.Enroll(matcher_pb2.EnrollRequest(
                identity_id=who.identity_id, display_name=who.display_name, site=who.site, groups=who.groups,
                metadata=metadata, embeddings=item.templates, mode=common_pb2.ENROLL_MODE_CREATE,
                allow_duplicate_of=allowed), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"facegate gallery import: {args.file}:{number}: {who.identity_id}: "
                  f"{exc.code().name}: {exc.details()} ({imported} imported before it; running the import again "
                  "is safe)", file=sys.stderr)
            return 2
        imported += 1
    print(f"imported {imported} identities from {args.file}")
    return 0


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def cmd_gallery_reembed(args: argparse.Namespace) -> int:
    """Move every identity of a gallery to another model's: each person enrolled again, through a
    gateway running the new model, from the photos a site kept of them (`--photos DIR/<identity
    id>/*.jpg|png`). FaceGate keeps no photos, and a template of one model cannot be turned into
    another's, so whoever has no kept photo needs new ones: they are listed, and the run exits 1."""
    import grpc

    from services.contracts.v1 import common_pb2, gateway_pb2, matcher_pb2
    from services.core.images import ImageError

    if not args.photos.is_dir():
        print(f"facegate gallery reembed: --photos {args.photos} is not a directory (one folder of photos per "
              "identity id)", file=sys.stderr)
        return 2
    try:
        people = [item.identity for item in _matcher(args).ExportIdentities(
            matcher_pb2.ExportIdentitiesRequest(site=args.site), timeout=args.timeout)]
    except grpc.RpcError as exc:
        return _rpc_failed("gallery reembed", exc)
    gateway = _gateway(args)
    moved, already, need_photos = 0, 0, []
    for who in people:
        folder = args.photos / who.identity_id
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []
        images, sent, unreadable = [], [], []
        for path in paths:
            try:
                images.append(_encoded_photo(str(path)))
                sent.append(path)
            except (OSError, ImageError) as exc:
                unreadable.append(f"{path.name}: {exc}")
        if not images:
            need_photos.append((who.identity_id, "; ".join(unreadable) or f"no photo in {folder}"))
            continue
        try:
            reply = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                identity_id=who.identity_id, display_name=who.display_name, site=who.site, groups=who.groups,
                metadata=_caller_metadata(who.metadata), images=images, mode=common_pb2.ENROLL_MODE_CREATE,
                allow_duplicate_of=_lookalikes(who.metadata)),
                timeout=args.timeout)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                need_photos.append((who.identity_id, exc.details()))  # no usable face, or looks like another
                continue
            print(f"facegate gallery reembed: {who.identity_id}: {exc.code().name}: {exc.details()} ({moved} moved "
                  "before it; running it again is safe)", file=sys.stderr)
            return 2
        refused = [f"{path.name}: {error}" for path, error in zip(sent, reply.image_errors, strict=False) if error]
        if reply.templates_added == 0 and len(refused) < len(sent):  # photos accepted, stored by an earlier run
            already += 1
            continue
        if reply.templates_added == 0:
            need_photos.append((who.identity_id, "; ".join(unreadable + refused)))
            continue
        moved += 1
        if refused or unreadable:
            print(f"{who.identity_id}: {reply.templates_added} photo(s) enrolled; not used: "
                  + "; ".join(unreadable + refused))
    for identity_id, why in need_photos:
        print(f"{identity_id}: needs new photos ({why})")
    print(f"{moved} identities re-enrolled with the gateway's model, {already} already there, {len(need_photos)} "
          f"need new photos (of {len(people)})")
    return 1 if need_photos else 0


def cmd_gallery_keygen(args: argparse.Namespace) -> int:
    from facegate import gallery_file

    try:
        recipient = gallery_file.keygen(args.file)
    except (gallery_file.GalleryFileError, OSError) as exc:
        print(f"facegate gallery keygen: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: the secret key (keep it where exports are read); export to it with --recipient {recipient}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def pipeline_options(p: argparse.ArgumentParser, min_face: int = 20) -> None:
        p.add_argument("--model", default="dlib-resnet-v1", help="model name or model directory")
        p.add_argument("--min-face-size", type=int, default=min_face, help="smallest face side in px (>= 12)")
        p.add_argument("--min-score", type=float, default=0.95, help="detector confidence threshold (0..1)")

    p = sub.add_parser("prepare", help="prepare model files into the cache")
    p.add_argument("--model", default=None, help="one known model (default: every known model)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("tflite", help="convert a SavedModel model to a TFLite model directory (fp32, fp16, int8)")
    p.add_argument("--out", type=Path, required=True, help="the model directory to write")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--representative", type=Path, default=None,
                   help="int8: a folder of face photos to calibrate activations on (never the evaluation's)")
    p.add_argument("--count", type=int, default=300, help="int8: representative faces to use")
    p.add_argument("--seed", type=int, default=0)
    pipeline_options(p, min_face=40)
    p.set_defaults(func=cmd_tflite)

    p = sub.add_parser("train", help="train a head on the frozen embedding; write a model directory with its card")
    p.add_argument("--data", type=Path, required=True, help="image root in LFW layout (<person>/<person>_NNNN.jpg)")
    p.add_argument("--pairs", type=Path, required=True,
                   help="a pairs file naming the training people (e.g. pairsDevTrain.txt): all their images are used")
    p.add_argument("--out", type=Path, required=True, help="the model directory to write")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="where each epoch is saved, and resumed from (default: OUT.checkpoints)")
    p.add_argument("--head", default="linear", help="linear or mlp")
    p.add_argument("--loss", default="semi_hard", help="semi_hard, batch_hard, batch_all or contrastive")
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--people", type=int, default=64, help="P: people per P x K batch")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--copies", type=int, default=2, help="augmented copies of each training image")
    p.add_argument("--holdout", type=float, default=0.2, help="share of the people held out to calibrate on")
    p.add_argument("--limit-people", type=int, default=None, help="a seeded subset of the people (a quick run)")
    p.add_argument("--far", type=float, action="append", default=None, help="target FAR to calibrate (repeatable)")
    p.add_argument("--default-far", type=float, default=1e-3, help="the FAR of the card's default threshold")
    p.add_argument("--model-id", default=None, help="the new model's id (default: <base>-<loss>-<head>)")
    p.add_argument("--seed", type=int, default=0)
    pipeline_options(p, min_face=40)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="faces and embeddings for each image, one JSON line per image")
    p.add_argument("images", nargs="+")
    pipeline_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="are the main faces of two photos the same person?")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--threshold", type=float, default=None, help="override the model's calibrated threshold")
    pipeline_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("eval", help="benchmarks")
    eval_sub = p.add_subparsers(dest="benchmark", required=True)
    p = eval_sub.add_parser("lfw", help="LFW verification, standard 10-fold protocol")
    p.add_argument("--data", type=Path, required=True, help="LFW image root (e.g. lfw-deepfunneled)")
    p.add_argument("--pairs", type=Path, required=True, help="pairs.txt (or a View 1 file)")
    p.add_argument("--limit", type=int, default=None, help="seeded random subset of N pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the full report here")
    pipeline_options(p, min_face=40)
    p.set_defaults(func=cmd_eval_lfw)

    p = sub.add_parser("cluster", help="group faces from `facegate embed` output into likely-same people")
    p.add_argument("faces", type=Path, help="JSON lines written by `facegate embed`")
    p.add_argument("--max-distance", type=float, default=0.35,
                   help="cut distance (mean pairwise, average linkage); the default suits dlib-resnet-v1 (for "
                        "mobilefacenet-v1, whose distances are ~2.8x larger, try 1.0)")
    p.add_argument("--min-size", type=int, default=1, help="smaller clusters are reported as cluster -1")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("calibrate", help="distance thresholds for target false-accept rates")
    p.add_argument("--data", type=Path, required=True, help="image root in LFW layout (<person>/<person>_NNNN.jpg)")
    p.add_argument("--pairs", type=Path, required=True,
                   help="pairs file naming the images to use (e.g. pairsDevTrain.txt; never the test pairs)")
    p.add_argument("--far", type=float, action="append", default=None, help="target FAR (repeatable)")
    p.add_argument("--json", type=Path, default=None, help="write the report (points, histograms) here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of the distance distributions here")
    pipeline_options(p, min_face=40)
    p.set_defaults(func=cmd_calibrate)

    def tls_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tls-dir", default=os.environ.get("FACEGATE_TLS_DIR", ""),
                       help="your certificate: a directory with tls.crt, tls.key, ca.crt (env FACEGATE_TLS_DIR)")
        p.add_argument("--insecure", action="store_true", help="plaintext, for a stack run with --insecure")
        p.add_argument("--token-file", default=os.environ.get("FACEGATE_TOKEN_FILE", ""),
                       help="a bearer token (`facegate tokens issue`) to call as its subject: on a service's "
                            "--token-port with --ca-file, or with --tls-dir on its main port (env FACEGATE_TOKEN_FILE)")
        p.add_argument("--ca-file", default=os.environ.get("FACEGATE_CA_FILE", ""),
                       help="the CA certificate to trust when calling with a token and no --tls-dir "
                            "(env FACEGATE_CA_FILE)")

    def gateway_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gateway", default=os.environ.get("FACEGATE_GATEWAY", "127.0.0.1:50050"),
                       help="gateway host:port (env FACEGATE_GATEWAY)")
        p.add_argument("--timeout", type=float, default=30.0, help="RPC deadline, s")
        tls_options(p)

    p = sub.add_parser("enroll", help="enroll a person from photos through the gateway (a new person, unless "
                                      "--add or --update)")
    p.add_argument("--id", required=True, help="identity id (letters, digits, ._:@-)")
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--site", default="", help="site the person belongs to (empty = all)")
    p.add_argument("--group", action="append", default=[], help="access group (repeatable)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--add", action="store_true", help="add these photos to an enrolled person (each must look "
                                                        "like them); name, site and groups are kept")
    how.add_argument("--update", action="store_true", help="change an enrolled person's name, site or groups; "
                                                           "no photos")
    p.add_argument("--allow-duplicate-of", action="append", default=[], metavar="ID",
                   help="enrol even though the face looks like this enrolled person (twins; repeatable; recorded)")
    p.add_argument("images", nargs="*")
    gateway_options(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="send photos to the gateway as camera frames; print decisions")
    p.add_argument("--door", default="cli", help="door id the frames come from")
    p.add_argument("--frames", type=int, default=2, help="frames each photo is shown for (a decision needs the "
                                                          "door's frames_needed; default 2)")
    p.add_argument("--site", default="", help="site of that door (empty = the gateway's default)")
    p.add_argument("images", nargs="+")
    gateway_options(p)
    p.set_defaults(func=cmd_identify)

    gallery = sub.add_parser("gallery", help="export or import a matcher's gallery (encrypted files)").add_subparsers(
        dest="action", required=True)
    for action, func, text in (("export", cmd_gallery_export, "write every identity and template, encrypted"),
                               ("import", cmd_gallery_import, "enroll identities from an export")):
        p = gallery.add_parser(action, help=text)
        p.add_argument("file", type=Path)
        p.add_argument("--matcher", default=os.environ.get("FACEGATE_MATCHER", "127.0.0.1:50053"),
                       help="matcher host:port (env FACEGATE_MATCHER)")
        p.add_argument("--timeout", type=float, default=300.0, help="RPC deadline, s")
        p.add_argument("--passphrase", action="store_true", help="encrypt to / decrypt with a passphrase asked for")
        p.add_argument("--passphrase-file", default="", help="the passphrase, from this file")
        tls_options(p)
        if action == "export":
            p.add_argument("--site", default="", help="only this site")
            p.add_argument("--recipient", action="append", default=[], metavar="PUBLIC_KEY",
                           help="encrypt to this age public key (age1..., `facegate gallery keygen`; repeatable)")
            p.add_argument("--plaintext", action="store_true", help="write it unencrypted (biometric data: avoid)")
        else:
            p.add_argument("--identity", action="append", type=Path, default=[], metavar="KEY_FILE",
                           help="the secret key of a recipient the export was encrypted to (repeatable)")
            p.add_argument("--allow-duplicate-of", action="append", default=[], metavar="ID",
                           help="import a face even though it looks like this identity (as it did when exported)")
        p.set_defaults(func=func)
    p = gallery.add_parser("reembed", help="enrol a gallery's people again through a gateway running another model, "
                                           "from photos the site kept")
    p.add_argument("--photos", type=Path, required=True, help="a folder per identity id holding its photos (jpg, png)")
    p.add_argument("--matcher", default=os.environ.get("FACEGATE_MATCHER", "127.0.0.1:50053"),
                   help="the matcher of the gallery to move (its model's), host:port (env FACEGATE_MATCHER)")
    p.add_argument("--gateway", default=os.environ.get("FACEGATE_GATEWAY", "127.0.0.1:50050"),
                   help="a gateway whose stack runs the new model, host:port (env FACEGATE_GATEWAY)")
    p.add_argument("--site", default="", help="only this site")
    p.add_argument("--timeout", type=float, default=300.0, help="RPC deadline, s")
    tls_options(p)
    p.set_defaults(func=cmd_gallery_reembed)
    p = gallery.add_parser("keygen", help="create a key pair to encrypt exports to (age format)")
    p.add_argument("file", type=Path, help="where to write the secret key (owner-only)")
    p.set_defaults(func=cmd_gallery_keygen)

    p = sub.add_parser("camera", help="edge agent: stream a camera (URL, video file or device) to the gateway")
    p.add_argument("--door", required=True, help="door id (as in the gateway's door configuration)")
    p.add_argument("--source", required=True, help="rtsp://..., http://..., a video file, or a device number")
    p.add_argument("--site", default="", help="site of the door (when the gateway has no door configuration)")
    p.add_argument("--fps", type=float, default=5.0, help="frames sent per second (default 5)")
    p.add_argument("--fast", action="store_true", help="a video file as fast as the gateway takes it, not in real time")
    gateway_options(p)
    p.set_defaults(func=cmd_camera)

    p = sub.add_parser("fleet", help="on Kubernetes: keep one camera agent Deployment per door that names a camera")
    env = os.environ.get
    p.add_argument("--namespace", default=env("POD_NAMESPACE", ""), help="namespace of the doors and agents "
                                                                         "(env POD_NAMESPACE)")
    p.add_argument("--identity", default=env("POD_NAME", ""), help="this replica's name in the Lease (env POD_NAME)")
    p.add_argument("--kubeconfig", default=env("KUBECONFIG", ""),
                   help="a kubeconfig file (env KUBECONFIG); default: the pod's service account")
    p.add_argument("--doors-configmap", default="facegate-doors", help="ConfigMap with the doors file")
    p.add_argument("--doors-key", default="doors.yaml", help="its key holding the doors file")
    p.add_argument("--status-configmap", default="facegate-fleet-status", help="ConfigMap the status is written to")
    p.add_argument("--lease", default="facegate-fleet", help="the coordination.k8s.io Lease replicas run for")
    p.add_argument("--agent-image", default=env("FACEGATE_AGENT_IMAGE", ""),
                   help="image the agents run (env FACEGATE_AGENT_IMAGE)")
    p.add_argument("--gateway", default=env("FACEGATE_GATEWAY", "gateway:50050"),
                   help="the gateways' Service, host:port, as agents reach it (env FACEGATE_GATEWAY)")
    p.add_argument("--agent-fps", type=float, default=5.0, help="frames per second each agent sends")
    p.add_argument("--issuer", default="", help="a cert-manager issuer: the fleet asks it for each agent's "
                                                "certificate; default: you create Secret <agent>-tls per agent")
    p.add_argument("--issuer-kind", default="Issuer", choices=["Issuer", "ClusterIssuer"])
    p.add_argument("--credentials-secret", default="facegate-camera-credentials",
                   help="optional Secret whose keys become the agents' environment: $(KEY) in a camera URL")
    p.add_argument("--resync-seconds", type=float, default=60.0, help="full pass at least this often")
    p.add_argument("--lease-seconds", type=int, default=15, help="a silent leader is replaced after this")
    p.add_argument("--renew-seconds", type=int, default=10, help="a leader that cannot renew for this long stops")
    p.add_argument("--retry-seconds", type=int, default=2, help="how often the Lease is renewed or tried")
    p.add_argument("--metrics-host", default=env("FACEGATE_HOST", "127.0.0.1"),
                   help="address of the metrics and health ports")
    p.add_argument("--metrics-port", type=int, default=9108, help="port of /metrics (-1: none)")
    p.add_argument("--health-port", type=int, default=8086, help="port of /healthz, for probes (-1: none)")
    p.add_argument("--log-level", default=env("FACEGATE_LOG_LEVEL", "INFO"))
    p.set_defaults(func=cmd_fleet)

    outcomes = ["granted", "denied_unknown", "denied_policy", "denied_liveness", "review", "error"]
    p = sub.add_parser("events", help="decisions (or, with --kind admin, admin actions) from the gateway's audit "
                                      "log, newest first")
    p.add_argument("--kind", choices=["decisions", "admin"], default="decisions",
                   help="door decisions (default), or admin actions: enrolments, erasures, door-file changes")
    p.add_argument("--door", default="", help="only this door")
    p.add_argument("--site", default="", help="only this site")
    p.add_argument("--outcome", choices=outcomes, help="only this outcome")
    p.add_argument("--since", type=parse_since, help="e.g. 15m, 1h, 2d, or 2026-11-22T08:00")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    gateway_options(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("erase", help="right to erasure: delete a person from the gallery, optionally "
                                     "pseudonymising their past decisions (recorded as an admin action)")
    p.add_argument("--id", required=True, help="identity id")
    p.add_argument("--pseudonymise", action="store_true",
                   help="replace the person's id and name in past decisions by a random pseudonym")
    p.add_argument("--reason", default="", help="why, e.g. a ticket number (kept with the admin action)")
    gateway_options(p)
    p.set_defaults(func=cmd_erase)

    certs = sub.add_parser("certs", help="a local certificate authority for FaceGate's mutual TLS").add_subparsers(
        dest="action", required=True)
    p = certs.add_parser("init", help="create a CA (ca.crt, ca.key) in a directory")
    p.add_argument("dir", type=Path)
    p.add_argument("--days", type=int, default=365, help="CA lifetime in days (default 365)")
    p.set_defaults(func=cmd_certs_init)
    p = certs.add_parser("issue", help="issue a certificate (tls.crt, tls.key, ca.crt) for one identity")
    p.add_argument("--ca", type=Path, required=True, help="the CA directory (`facegate certs init`)")
    p.add_argument("--out", type=Path, required=True, help="where to write it (re-issuing there rotates it)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", help="a FaceGate service: gateway, detector, embedder, matcher")
    who.add_argument("--camera", help="a camera agent, for this door (with --site)")
    who.add_argument("--door-controller", help="a door controller, for this door (with --site)")
    who.add_argument("--user", help="a person using the CLI or the console")
    who.add_argument("--integration", help="another internal system calling the matcher")
    p.add_argument("--site", default="", help="the site of a camera or door controller")
    p.add_argument("--dns", action="append", default=[], help="a DNS name the service is reached at (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="an IP address the service is reached at (repeatable)")
    p.add_argument("--hours", type=float, default=7 * 24, help="lifetime in hours (default 168: re-issue weekly)")
    p.set_defaults(func=cmd_certs_issue)

    tokens = sub.add_parser("tokens", help="bearer tokens (JWTs) for callers without a client certificate"
                            ).add_subparsers(dest="action", required=True)
    p = tokens.add_parser("keygen", help="create a token issuer's key pair (token.key, token.pub) in a directory")
    p.add_argument("dir", type=Path)
    p.set_defaults(func=cmd_tokens_keygen)
    p = tokens.add_parser("issue", help="print a signed token for one identity and some of its roles")
    p.add_argument("--key", type=Path, required=True, help="the issuer's token.key")
    p.add_argument("--issuer", required=True, help="the issuer's name, as in the access policy's token_issuers")
    p.add_argument("--subject", required=True, help="whom the token speaks for, e.g. spiffe://facegate/user/alice")
    p.add_argument("--scope", action="append", required=True,
                   help="a role the token may use (repeatable; the policy's roles for the subject still bound it)")
    p.add_argument("--minutes", type=float, default=15.0, help="lifetime (default 15)")
    p.set_defaults(func=cmd_tokens_issue)

    console = sub.add_parser("console", help="the console's accounts").add_subparsers(dest="action", required=True)
    p = console.add_parser("add-user", help="create a console account (e.g. the first admin) and print its one-time "
                                            "password")
    p.add_argument("username")
    p.add_argument("--role", choices=["admin", "operator", "auditor", "viewer"], default="admin")
    p.add_argument("--db", type=Path, default=Path("./facegate-console.db"),
                   help="the console's --accounts-db (default ./facegate-console.db)")
    p.add_argument("--reset", action="store_true", help="the account exists: give it a new one-time password")
    p.set_defaults(func=cmd_console_add_user)

    p = sub.add_parser("watch", help="print every decision as it is made")
    p.add_argument("--door", action="append", default=[], help="only this door (repeatable)")
    gateway_options(p)
    p.set_defaults(func=cmd_watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "calibrate" and not args.far:
        args.far = [1e-2, 1e-3, 1e-4]
    if getattr(args, "command", None) == "train" and not args.far:  # 1e-4 needs more held-out people than most runs
        args.far = [1e-2, 1e-3]
    try:
        from services.detector.mtcnn_cascade import DetectorSettings  # validates early, before TF loads

        if hasattr(args, "min_face_size"):
            DetectorSettings(min_face_size=args.min_face_size, min_score=args.min_score)
    except ValueError as exc:
        print(f"facegate: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
