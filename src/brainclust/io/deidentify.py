"""De-identified copies of DICOM files (``brainclust export``, copy mode).

A copy keeps an attribute only when it is on a whitelist, so nothing a scanner or a PACS adds (patient,
study, institution, physicians, operators, dates, times, device serials, comments, private tags,
sequences) can pass unnoticed:

- what the pixels need to be read and placed (:data:`KEEP`: the image pixel module, rescale and window,
  geometry, instance and series numbers, acquisition parameters), with a code string (VR ``CS``) kept only
  when it has the characters of one (upper-case letters, digits, space, underscore: at most 16);
- the text brainclust reads as metadata, through the rules of :mod:`brainclust.io.privacy`
  (:data:`TEXT`: a series description or protocol name only when :func:`~brainclust.io.privacy.safe_text`
  passes it; the manufacturer and model through their own rules);
- the study, series, instance and frame-of-reference UIDs replaced by UIDs derived from them
  (``pydicom.uid.generate_uid`` with the original as its entropy source): the same original gives the same
  new UID, so the files of one series stay one series, and the new UID does not give the old one back;
- ``PatientIdentityRemoved`` ``YES`` and ``DeidentificationMethod`` :data:`METHOD` added.

Text burned into the pixels is not removed (``BurnedInAnnotation`` is kept, so a reader can tell).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings

from brainclust.errors import InputError
from brainclust.io import privacy

#: Attributes copied as they are (numbers, pixel data, code strings checked by :data:`_CODE`).
KEEP = frozenset("""
SOPClassUID ImageType Modality SamplesPerPixel PhotometricInterpretation Rows Columns BitsAllocated BitsStored
HighBit PixelRepresentation PlanarConfiguration PixelAspectRatio NumberOfFrames PixelData FloatPixelData
DoubleFloatPixelData ExtendedOffsetTable ExtendedOffsetTableLengths SmallestImagePixelValue
LargestImagePixelValue RescaleIntercept RescaleSlope WindowCenter WindowWidth VOILUTFunction
LossyImageCompression LossyImageCompressionRatio LossyImageCompressionMethod BurnedInAnnotation PixelSpacing
ImageOrientationPatient ImagePositionPatient SliceThickness SpacingBetweenSlices SliceLocation PatientPosition
InstanceNumber SeriesNumber AcquisitionNumber MagneticFieldStrength RepetitionTime EchoTime InversionTime
FlipAngle EchoTrainLength NumberOfAverages ScanningSequence SequenceVariant ScanOptions MRAcquisitionType
BodyPartExamined""".split())
#: Text attributes and the rule each must pass (:mod:`brainclust.io.privacy`); otherwise left out.
TEXT = {"SeriesDescription": privacy.safe_text, "ProtocolName": privacy.safe_text,
        "Manufacturer": privacy.safe_vendor, "ManufacturerModelName": privacy.safe_model}
#: UIDs replaced by derived ones.
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
#: ``DeidentificationMethod`` of every copy.
METHOD = "brainclust export: attributes kept by a whitelist, UIDs replaced"
_CODE = re.compile(r"[A-Z0-9 _]{0,16}")
_UID = re.compile(r"[0-9.]{1,64}")


def _kept(elem) -> bool:
    if elem.keyword not in KEEP or elem.VR == "SQ":
        return False
    if elem.VR == "CS":
        values = elem.value if elem.VM > 1 else [elem.value]
        return all(_CODE.fullmatch(str(v or "")) for v in values)
    return elem.VR != "UI" or bool(_UID.fullmatch(str(elem.value or "")))


def deidentified_dicom(data: bytes, source: str) -> bytes:
    """The bytes of a DICOM file (``data``, read from ``source``) as a de-identified DICOM file (module
    docstring). A file pydicom cannot read or write back is an :class:`InputError` naming ``source``."""
    import pydicom
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    try:
        with warnings.catch_warnings(), config.disable_value_validation():
            warnings.simplefilter("ignore")  # pydicom's warnings quote values
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise ValueError("no pixel data")
            out = Dataset()
            for elem in ds:
                if _kept(elem):
                    out.add(elem)
            for key, rule in TEXT.items():
                value = rule(ds.get(key)) if ds.get(key) else None
                if value:
                    setattr(out, key, value)
            for key in UIDS:
                if ds.get(key):
                    setattr(out, key, generate_uid(entropy_srcs=[str(ds[key].value)]))
            out.PatientIdentityRemoved = "YES"
            out.DeidentificationMethod = METHOD
            meta = FileMetaDataset()
            old = getattr(ds, "file_meta", None) or {}
            meta.TransferSyntaxUID = old.get("TransferSyntaxUID") or ImplicitVRLittleEndian
            meta.MediaStorageSOPClassUID = out.get("SOPClassUID") or "1.2.840.10008.5.1.4.1.1.7"
            meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID") or generate_uid(
                entropy_srcs=[hashlib.sha256(data).hexdigest()])
            out.file_meta = meta
            out.preamble = b"\0" * 128
            buf = io.BytesIO()
            out.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds; their messages may quote values
        raise InputError(f"export: '{source}' cannot be de-identified ({type(exc).__name__}); nothing was "
                         "exported (--dicom-headers keep copies DICOM files as they are)") from None
    return buf.getvalue()
