"""De-identified copies of DICOM files (``brainclust export``, copy mode).

A copy keeps an attribute only when it is on a whitelist *and* its value is of the kind the attribute
holds, so nothing a scanner or a PACS adds (patient, study, institution, physicians, operators, dates,
times, device serials, comments, private tags, sequences), nor text written into a field meant for a
number or a code, can pass:

- what the pixels need to be read and placed (:data:`NUMBERS`, :data:`BINARY`, :data:`CODES`): the element
  must have its dictionary VR; a number (``DS``/``IS``) must parse as one; a code string must be one of
  the field's defined terms (:data:`CODES`, and :data:`brainclust.io.privacy.CODE_TERMS`), a value that is
  not is left out (``ImageType``: the other values stay);
- the text brainclust reads as metadata, through the rules of :mod:`brainclust.io.privacy` (:data:`TEXT`:
  a series description or protocol name only when :func:`~brainclust.io.privacy.safe_text` passes it, the
  manufacturer and model by theirs); a contrast agent that fails them is written ``REMOVED`` (its presence
  is what brainclust reads);
- the study, series, instance and frame-of-reference UIDs replaced by UIDs derived from them and a salt
  drawn once per export (``pydicom.uid.generate_uid``): the files of one series stay one series, and no
  one can confirm a guessed original UID against a copy;
- uncompressed pixel data cut to the frames' size (bytes written after the last frame go);
- ``PatientIdentityRemoved`` ``YES`` and ``DeidentificationMethod`` :data:`METHOD` added.

Not removed: text burned into the pixels (``BurnedInAnnotation`` is kept, so a reader can tell), and marker
segments (comments, EXIF) inside compressed frames.

:func:`deidentified_copy` is what ``export`` calls for any copied file: DICOM as above, PNG, JPEG and TIFF
without their metadata (:mod:`brainclust.io.rastermeta`), BMP as it is.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings

from brainclust.errors import InputError
from brainclust.io import privacy
from brainclust.io.csvcell import NUMBER

#: Attributes whose values are numbers (``DS``/``IS`` parsed; binary VRs are numbers by nature).
NUMBERS = frozenset("""Rows Columns SamplesPerPixel BitsAllocated BitsStored HighBit PixelRepresentation
PlanarConfiguration PixelAspectRatio NumberOfFrames SmallestImagePixelValue LargestImagePixelValue RescaleIntercept
RescaleSlope WindowCenter WindowWidth LossyImageCompressionRatio PixelSpacing ImageOrientationPatient
ImagePositionPatient SliceThickness SpacingBetweenSlices SliceLocation InstanceNumber SeriesNumber AcquisitionNumber
MagneticFieldStrength RepetitionTime EchoTime InversionTime FlipAngle EchoTrainLength NumberOfAverages
RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
BluePaletteColorLookupTableDescriptor""".split())
#: Attributes copied as bytes (a PALETTE COLOR image's lookup tables are part of its pixels).
BINARY = frozenset("PixelData FloatPixelData DoubleFloatPixelData ExtendedOffsetTable ExtendedOffsetTableLengths "
                   "RedPaletteColorLookupTableData GreenPaletteColorLookupTableData BluePaletteColorLookupTableData "
                   "SegmentedRedPaletteColorLookupTableData SegmentedGreenPaletteColorLookupTableData "
                   "SegmentedBluePaletteColorLookupTableData".split())
#: Code strings and the values each may hold.
CODES: dict[str, frozenset] = {
    "PhotometricInterpretation": frozenset("MONOCHROME1 MONOCHROME2 RGB YBR_FULL YBR_FULL_422 YBR_PARTIAL_420 "
                                           "YBR_ICT YBR_RCT".split()) | {"PALETTE COLOR"},
    "ImageType": frozenset("""ORIGINAL DERIVED PRIMARY SECONDARY M P R I MAG MAGNITUDE PHASE REAL IMAGINARY NORM ND
        DIS2D DIS3D MPR MIP MINIP MOSAIC OTHER AXIAL LOCALIZER DIFFUSION ADC TRACEW FA PROJECTION_IMAGE""".split()),
    "Modality": privacy.CODE_TERMS["modality"],
    "ScanningSequence": privacy.CODE_TERMS["sequence"],
    "MRAcquisitionType": privacy.CODE_TERMS["acquisition"],
    "BodyPartExamined": privacy.CODE_TERMS["body_part"],
    "SequenceVariant": frozenset("SK MTC SS TRSS SP MP OSP NONE".split()),
    "PatientPosition": frozenset("HFP HFS HFDR HFDL FFDR FFDL FFP FFS LFP LFS RFP RFS AFDR AFDL PFDR PFDL".split()),
    "VOILUTFunction": frozenset("LINEAR LINEAR_EXACT SIGMOID".split()),
    "BurnedInAnnotation": frozenset({"YES", "NO"}),
    "LossyImageCompression": frozenset({"00", "01"}),
    "LossyImageCompressionMethod": frozenset("ISO_10918_1 ISO_14495_1 ISO_15444_1 ISO_15444_15 ISO_13818_2 "
                                             "ISO_14496_10 ISO_23008_2".split()),
}
#: Text attributes and the rule each must pass (:mod:`brainclust.io.privacy`); otherwise left out.
TEXT = {"SeriesDescription": privacy.safe_text, "ProtocolName": privacy.safe_text,
        "Manufacturer": privacy.safe_vendor, "ManufacturerModelName": privacy.safe_model,
        "ContrastBolusAgent": privacy.safe_text}
#: UIDs replaced by derived ones.
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
#: ``DeidentificationMethod`` of every copy.
METHOD = "brainclust export: whitelisted attributes, UIDs replaced"  # LO: at most 64 characters
_UID = re.compile(r"[0-9.]{1,64}")


def _values(elem) -> list:
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _kept(elem):
    """The element as the copy keeps it (its values filtered), or ``None``."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement

    key = elem.keyword
    if not (key in NUMBERS or key in BINARY or key in CODES or key == "SOPClassUID"):
        return None
    try:
        vr = dictionary_VR(elem.tag)
        if elem.VR not in vr.split(" or ") and elem.VR != vr:  # "US or SS": as read from an implicit-VR file
            return None  # a number or a code declared as text
    except KeyError:
        return None
    if key == "SOPClassUID":
        return elem if _UID.fullmatch(str(elem.value or "")) else None
    if key in CODES:
        good = [str(v).strip() for v in _values(elem) if str(v).strip() in CODES[key]]
        return DataElement(elem.tag, elem.VR, good if len(good) > 1 else good[0]) if good else None
    if elem.VR in ("DS", "IS") and not all(NUMBER.fullmatch(str(v).strip()) for v in _values(elem)):
        return None
    return elem


def _frames_bytes(ds) -> int | None:
    """The size of uncompressed pixel data from the image's header (``None`` when it cannot be told)."""
    try:
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    size = (n * bits + 7) // 8
    return size + size % 2


def deidentified_dicom(data: bytes, source: str, salt: str) -> bytes:
    """The bytes of a DICOM file (``data``, read from ``source``) as a de-identified DICOM file (module
    docstring); ``salt`` is mixed into the new UIDs (one per export). A file pydicom cannot read or write back
    is an :class:`InputError` naming ``source``."""
    import pydicom
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, UID, generate_uid

    try:
        with warnings.catch_warnings(), config.disable_value_validation():
            warnings.simplefilter("ignore")  # pydicom's warnings quote values
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if not any(k in ds for k in BINARY if k.endswith("PixelData")):
                raise ValueError("no pixel data")
            out = Dataset()
            for tag in list(ds.keys()):
                try:
                    kept = _kept(ds[tag])
                except (ValueError, TypeError, OverflowError):  # a value that is not of its VR: left out
                    continue
                if kept is not None:
                    out.add(kept)
            for key, rule in TEXT.items():
                value = rule(ds.get(key)) if ds.get(key) else None
                if value or (key == "ContrastBolusAgent" and ds.get(key)):
                    setattr(out, key, value or "REMOVED")
            for key in UIDS:
                if ds.get(key):
                    setattr(out, key, generate_uid(entropy_srcs=[salt, str(ds[key].value)]))
            meta = FileMetaDataset()
            old = getattr(ds, "file_meta", None) or {}
            ts = UID(old.get("TransferSyntaxUID") or ImplicitVRLittleEndian)
            size = _frames_bytes(out)
            if "PixelData" in out and not ts.is_compressed and size is not None and len(out.PixelData) > size:
                out.PixelData = out.PixelData[:size]  # bytes after the last frame may hold anything
            out.PatientIdentityRemoved = "YES"
            out.DeidentificationMethod = METHOD
            meta.TransferSyntaxUID = ts
            meta.MediaStorageSOPClassUID = out.get("SOPClassUID") or "1.2.840.10008.5.1.4.1.1.7"
            meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID") or generate_uid(
                entropy_srcs=[salt, hashlib.sha256(data).hexdigest()])
            out.file_meta = meta
            out.preamble = b"\0" * 128
            buf = io.BytesIO()
            out.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds; their messages may quote values
        raise InputError(f"export: '{source}' cannot be de-identified ({type(exc).__name__}); nothing was "
                         "exported (--dicom-headers keep copies DICOM files as they are)") from None
    return buf.getvalue()


def is_dicom(data: bytes) -> bool:
    """Whether checked bytes of an image file are DICOM, told from them as the scan tells it (the run folder's
    ``type`` column is not trusted): the ``DICM`` marker, or bytes Pillow cannot open (the plan accepted the
    file as a DICOM without a preamble)."""
    from PIL import Image

    from brainclust.io.formats.dicom import marked

    if marked(data):
        return True
    try:
        with Image.open(io.BytesIO(data)):
            return False
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for bytes it does not read
        return True


def deidentified_copy(data: bytes, source: str, salt: str | None) -> tuple[bytes, str]:
    """``(bytes to write, what was done)`` for a copy of an image file: ``"dicom"`` (:func:`deidentified_dicom`),
    ``"raster"`` (a PNG, JPEG or TIFF without its metadata), ``"kept"`` (one whose metadata could not be removed:
    copied as it is) or ``""`` (a BMP, or ``salt`` ``None``: ``--dicom-headers keep``)."""
    from brainclust.io.rastermeta import stripped

    if salt is None:
        return data, ""
    if is_dicom(data):
        return deidentified_dicom(data, source, salt), "dicom"
    kind, copy = stripped(data)
    if copy is not None:
        return copy, "raster"
    return data, "kept" if kind else ""
