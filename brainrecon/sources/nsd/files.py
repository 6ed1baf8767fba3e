"""Where the NSD files live (paths relative to the bucket root, mirrored under --nsd-dir) and what is known of them.

Facts from the NSD data manual and cvnlab's code (see ../shared/NSD.md in the project's history): 750 trials per
session; sessions completed per subject; the 1.8 mm volume sizes (X, Y, Z).
"""

from __future__ import annotations

BUCKET_URL = "https://natural-scenes-dataset.s3.amazonaws.com"
TERMS_URL = "https://cvnlab.slite.page/p/IB6BSeW_7o/Terms-and-Conditions"
ACCESS_FORM_URL = "https://forms.gle/xue2bCdM9LaFNMeb7"

TRIALS_PER_SESSION = 750
SESSIONS = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
VOLUME_XYZ = {1: (81, 104, 83), 2: (82, 106, 84), 3: (81, 106, 82), 4: (85, 99, 80),
              5: (79, 97, 78), 6: (85, 113, 83), 7: (78, 95, 81), 8: (80, 103, 78)}
N_STIMULI = 73000
BRICK_SIDE = 425
LABEL_VOLUMES = ("prf-visualrois", "floc-faces", "floc-places", "floc-bodies", "floc-words")

EXPDESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
STIMULI = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"


def betas(subject: int, session: int) -> str:
    return (f"nsddata_betas/ppdata/subj{subject:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR/"
            f"betas_session{session:02d}.hdf5")


def ncsnr(subject: int) -> str:
    return f"nsddata_betas/ppdata/subj{subject:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR/ncsnr.nii.gz"


def roi_volume(subject: int, name: str) -> str:
    return f"nsddata/ppdata/subj{subject:02d}/func1pt8mm/roi/{name}.nii.gz"


def ctab(subject: int, name: str) -> str:
    return f"nsddata/freesurfer/subj{subject:02d}/label/{name}.mgz.ctab"


def subject_files(subject: int, sessions: list[int]) -> list[str]:
    """Every file convert-nsd reads for one subject (the shared files first)."""
    return [EXPDESIGN, STIMULI, roi_volume(subject, "nsdgeneral"), ncsnr(subject),
            *(roi_volume(subject, n) for n in LABEL_VOLUMES), *(ctab(subject, n) for n in LABEL_VOLUMES),
            *(betas(subject, s) for s in sessions)]


def approx_size(path: str, subject: int) -> int:
    """Bytes, approximately, for the size shown before a download (the bucket is the authority)."""
    x, y, z = VOLUME_XYZ[subject]
    if path == STIMULI:
        return N_STIMULI * BRICK_SIDE * BRICK_SIDE * 3
    if path.endswith(".hdf5"):
        return TRIALS_PER_SESSION * x * y * z * 2
    if path == EXPDESIGN:
        return 300_000
    if path.endswith(".nii.gz"):
        return x * y * z  # compressed label / float volumes: a few hundred kB to a few MB
    return 1_000


def parse_sessions(text: str | None, subject: int) -> list[int]:
    """'1-37', '1,3,5-8' -> sorted session numbers; None -> every session the subject completed."""
    from brainrecon.errors import UserError
    if subject not in SESSIONS:
        raise UserError(f"--subject {subject}: NSD has subjects 1..8")
    n = SESSIONS[subject]
    if not text:
        return list(range(1, n + 1))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise UserError(f"--sessions {text!r}: write numbers and ranges, e.g. 1-37 or 1,3,5-8") from None
        if not 1 <= a <= b <= n:
            raise UserError(f"--sessions {text!r}: subject {subject} has sessions 1..{n}")
        out.update(range(a, b + 1))
    return sorted(out)
