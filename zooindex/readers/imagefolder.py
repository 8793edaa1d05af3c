"""Image folders: ``root/<class>/<image>``, optionally ``root/<split>/<class>/<image>``.

Class names are the folder names in sorted order and the labels index into them. When the
tree has a level of split folders (``train``, ``test``, ...), ``split`` picks one (default
``test``). The same tree packed as ``.tar.gz``/``.tgz``/``.tar`` is read member by member,
without extracting anything to disk; a single top folder inside the archive is skipped.

Images are decoded with Pillow, an optional extra. All images must share one size: resizing
here would silently change the data, and fitting images to a model's input size is the job
of :mod:`zooindex.adapt`. Grey images give ``(N, H, W)`` uint8; if any image has colour, all
are converted to RGB and the result is ``(N, H, W, 3)`` uint8.
"""

from __future__ import annotations

import os
import posixpath
import tarfile

import numpy as np

from ..errors import DependencyError, TargetError
from . import Dataset, register_reader, unknown_split

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SNIFF_DEPTH = 4


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DependencyError("reading image folders needs Pillow: pip install 'zooindex[images]'",
                              package="pillow") from None
    return Image


def _is_image(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def _hidden(part: str) -> bool:
    # dot files (including macOS "._x.png" forks) and "__MACOSX" folders are not data
    return part.startswith(".") or part == "__MACOSX"


def _is_tar(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(TAR_SUFFIXES)


def sniff(path: str) -> bool:
    if _is_tar(path):
        return True
    if not os.path.isdir(path):
        return False
    for folder, dirs, files in os.walk(path):
        depth = os.path.relpath(folder, path).count(os.sep) + (folder != path)
        if depth >= 1 and any(_is_image(f) for f in files):
            return True
        dirs[:] = [] if depth >= SNIFF_DEPTH else [d for d in dirs if not _hidden(d)]
    return False


def _folder_images(root: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        rel = os.path.relpath(folder, root)
        for name in files:
            if _is_image(name) and not _hidden(name):
                found.append(name if rel == "." else posixpath.join(*rel.split(os.sep), name))
    return found


def _tar_images(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    found = {}
    for member in tar.getmembers():
        name = posixpath.normpath(member.name.lstrip("/"))
        if member.isfile() and _is_image(name) and not any(map(_hidden, name.split("/"))):
            found[name] = member
    return found


def arrange(relpaths, split: str | None, source: str):
    """Pick the images of ``split`` and label them by class folder.

    ``relpaths`` are '/'-separated paths of image files under the root. Returns the chosen
    paths in class-then-name order, their class indices, and the sorted class names.
    """
    paths = sorted(relpaths)
    if not paths:
        raise TargetError(f"no images ({', '.join(EXTENSIONS)}) found in '{source}'; expected "
                          "root/<class>/<image>", path=source)
    parts = {p: p.split("/") for p in paths}
    depth = len(parts[paths[0]])
    for p, pieces in parts.items():
        if len(pieces) != depth or depth < 2:
            raise TargetError(f"image '{p}' in '{source}' is not at the place the others are; "
                              "images must sit at root/<class>/<image> or "
                              "root/<split>/<class>/<image>", path=source)
    # folders common to every image (a wrapping top folder in an archive) are not labels
    common = 0
    while common < depth - 2 and len({pieces[common] for pieces in parts.values()}) == 1:
        common += 1
    wrapper = parts[paths[0]][common - 1] if common else None
    parts = {p: pieces[common:] for p, pieces in parts.items()}
    if depth - common > 3:
        raise TargetError(f"images in '{source}' are nested {depth - common} folders deep "
                          f"(e.g. '{paths[0]}'); expected root/<class>/<image> or "
                          "root/<split>/<class>/<image>", path=source)
    if depth - common == 3:
        splits = sorted({pieces[0] for pieces in parts.values()})
        chosen = split or "test"
        if chosen not in splits:
            if split is None:
                raise TargetError(f"'{source}' has subfolders {', '.join(splits)} with class "
                                  "folders inside; choose one with --split", path=source)
            raise unknown_split(source, split, splits)
        parts = {p: pieces[1:] for p, pieces in parts.items() if pieces[0] == chosen}
    elif split is not None and split != wrapper:
        raise unknown_split(source, split, [])
    class_names = tuple(sorted({pieces[0] for pieces in parts.values()}))
    index = {name: i for i, name in enumerate(class_names)}
    chosen_paths = sorted(parts, key=lambda p: (index[parts[p][0]], p))
    labels = np.array([index[parts[p][0]] for p in chosen_paths], dtype=np.int64)
    return chosen_paths, labels, class_names


class _Stack:
    """Decoded images gathered into one preallocated uint8 array.

    Starts grey ``(N, H, W)`` and turns into RGB ``(N, H, W, 3)`` at the first colour image,
    so memory stays one copy of the data set.
    """

    def __init__(self, n: int):
        self.n = n
        self.array = None
        self.first = None

    def put(self, i: int, image, name: str) -> None:
        pixels = np.asarray(image)
        if self.array is None:
            self.first = (name, pixels.shape[:2])
            self.array = np.zeros((self.n,) + pixels.shape, dtype=np.uint8)
        if pixels.shape[:2] != self.first[1]:
            (h0, w0), (h, w) = self.first[1], pixels.shape[:2]
            raise TargetError(f"all images must share one size: '{self.first[0]}' is {w0}x{h0} "
                              f"but '{name}' is {w}x{h}; resize them to one size first",
                              path=name)
        if pixels.ndim == 3 and self.array.ndim == 3:
            self.array = np.repeat(self.array[..., None], 3, axis=-1)
        self.array[i] = pixels[..., None] if pixels.ndim < self.array.ndim - 1 else pixels


def _decode(Image, fileobj, name: str):
    try:
        with Image.open(fileobj) as image:
            image.load()
            return image.convert("L" if image.mode in GREY_MODES else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise TargetError(f"cannot decode image '{name}' ({exc}); remove or replace it",
                          path=name) from None


def _load_folder(root: str, split: str | None) -> Dataset:
    Image = _pillow()
    paths, labels, class_names = arrange(_folder_images(root), split, root)
    stack = _Stack(len(paths))
    for i, rel in enumerate(paths):
        file = os.path.join(root, *rel.split("/"))
        with open(file, "rb") as fh:
            stack.put(i, _decode(Image, fh, file), file)
    return Dataset(x=stack.array, y=labels, class_names=class_names, source=root)


def _load_tar(path: str, split: str | None) -> Dataset:
    Image = _pillow()
    try:
        with tarfile.open(path, "r:*") as tar:
            members = _tar_images(tar)
            paths, labels, class_names = arrange(members, split, path)
            slot = {members[p].offset: i for i, p in enumerate(paths)}
            stack = _Stack(len(paths))
            # decode in archive order so that a compressed stream is only read forwards
            for member in sorted((members[p] for p in paths), key=lambda m: m.offset):
                name = f"{path}:{member.name}"
                stack.put(slot[member.offset], _decode(Image, tar.extractfile(member), name), name)
    except (tarfile.TarError, EOFError) as exc:
        raise TargetError(f"cannot read archive '{path}' ({exc}); check that it is a complete "
                          ".tar.gz", path=path) from None
    except OSError as exc:
        raise TargetError(f"cannot read archive '{path}' ({exc})", path=path) from None
    return Dataset(x=stack.array, y=labels, class_names=class_names, source=path)


def load(path: str, split: str | None) -> Dataset:
    if os.path.isdir(path):
        return _load_folder(path, split)
    return _load_tar(path, split)


register_reader("imagefolder", sniff=sniff, load=load)
