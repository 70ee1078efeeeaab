"""The acquisition knobs of a phantom: what each is drawn from (with its source) and how to set it.

Every knob of a case that is not anatomy (patient sex and body size, heart rate, contrast timing, tissue
attenuation, noise dose, reconstruction kernel) has its drawn range here, in :data:`RANGES`, and can be
set for a shifted evaluation set through :class:`Acquisition` (``generate_case(acquisition=...)``,
``cardiovlm phantoms --sex/--body-size/--heart-rate/--kernel``). An override replaces a value after it
was drawn, so every other draw of the seed stays the same.

Two knobs are drawn elsewhere and only documented here: coronary dominance (about 88 % right, in
:func:`cardiovlm.training.phantoms.geometry.sample_anatomy`; the widely quoted angiographic figure is
85-90 % right dominant, no single source checked here) and the findings (0-3 per
case, :func:`cardiovlm.training.phantoms.lesions.sample_requests`); both are set with ``dominance=`` and
``findings=``. The undiluted contrast arriving by the SVC (700-1600 HU) is drawn with the thorax
(:func:`cardiovlm.training.phantoms.thorax.sample_thorax`).

Example::

    from cardiovlm.training.phantoms.acquisition import Acquisition
    generate_case(out, seed=3, realistic=True, acquisition=Acquisition(sex="female", heart_rate_bpm=95))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cardiovlm.tools.core.case_format import PhantomAcquisition
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.training.phantoms.physics import Physics
from cardiovlm.training.phantoms.raster import Contrast
from cardiovlm.training.phantoms.thorax import Thorax


class AcquisitionError(CardioVLMError):
    """An acquisition knob (sex, body size, heart rate, kernel) was set to a value the generator cannot make."""

    code = "phantom.acquisition_invalid"


@dataclass(frozen=True)
class Range:
    """A uniform draw between ``low`` and ``high``, with where the range comes from."""

    low: float
    high: float
    source: str

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class ArterialPhase:
    """Left-heart blood attenuation of a realistic phantom: a normal draw clipped to the adequate range.

    Coronary lumen attenuation of 250 HU or more is taken as adequate opacification and protocols aim
    for 300-450 HU (SCCT guidelines for the performance and acquisition of CCTA, Abbara et al., J Cardiovasc
    Comput Tomogr 2016;10:435; shared/REFERENCE.md). The real CCTA reference measured 285 HU and the real
    arterial-phase chest CT 474 HU (SD 39): both lie inside ``low``-``high``. The mean is the centre of the
    protocols' aim; the SD is a modelling choice (no published population SD is quoted here) that puts
    about 80 % of cases inside 300-450 HU.
    """

    mean: float = 375.0
    sd: float = 55.0
    low: float = 250.0  # adequate opacification
    high: float = 552.0  # the denser real reference (474 HU) + 2 x its SD (39 HU)

    def draw(self, rng: np.random.Generator) -> float:
        return float(np.clip(rng.normal(self.mean, self.sd), self.low, self.high))


@dataclass(frozen=True)
class Kernel:
    """A reconstruction kernel, described by the peak frequency of its noise power spectrum."""

    nps_peak_per_mm: float
    source: str


KERNELS: dict[str, Kernel] = {
    # cardiac CT is read on soft-tissue kernels; their NPS peaks at about 0.2-0.3 /mm
    "soft": Kernel(0.20, "lower end of soft-tissue kernels' 0.2-0.3 /mm (Anam et al., Algorithms 2022: ~0.2 /mm)"),
    "standard": Kernel(0.25, "centre of soft-tissue/cardiac kernels' 0.2-0.3 /mm (Solomon, Christianson & Samei, "
                             "Med Phys 2012;39:6048, which matches GE Soft/Standard to Siemens B35f/B43f)"),
    # for stents and dense calcium: a modelling choice, no measured peak is quoted here
    "sharp": Kernel(0.40, "sharper (edge-enhancing) kernels peak higher; 0.40 /mm is a modelling choice"),
}
DEFAULT_KERNEL = "standard"


@dataclass(frozen=True)
class AcquisitionRanges:
    """Where every drawn acquisition value comes from. Values are those the generator has always drawn."""

    # patient
    male_share: float = 0.6  # CCTA cohorts are about half to 60 % men (SCOT-HEART 56 %, NEJM 2018;379:924)
    body_size_clip_sd: float = 2.0  # body size in population SDs, N(0, 1) clipped; see generate._heart_scale
    heart_rate_bpm: Range = Range(50, 80, "beta-blocked CCTA: SCCT 2016 asks for < 60-65 bpm; many scans reach "
                                          "55-75 (Abbara et al., J Cardiovasc Comput Tomogr 2016;10:435)")
    # contrast timing: generator 1.0's left-heart draw, and the realistic arterial phase
    blood_left_hu: Range = Range(280, 520, "generator 1.0: good arterial phase, 280-520 HU")
    arterial_phase: ArterialPhase = ArterialPhase()
    # right heart / left heart: late RV filling (saline chase washes the right heart out) or even filling
    right_ratio_late: Range = Range(0.55, 0.85, "saline-chased RV lower than the LV")
    right_ratio_even: Range = Range(0.9, 1.05, "RV as bright as the LV (no saline chase)")
    # tissues (HU), generator 1.0 (real CCTA reference: myocardium 109, fat -97, lung -904 HU)
    myocardium_hu: Range = Range(100, 120, "real CCTA reference 109 HU")
    fat_hu: Range = Range(-105, -90, "real CCTA reference -97 HU")
    lung_hu: Range = Range(-900, -850, "real CCTA reference -904 HU")
    muscle_hu: Range = Range(40, 60, "skeletal muscle 40-60 HU")
    cortical_hu: Range = Range(750, 1100, "cortical bone")
    cancellous_hu: Range = Range(200, 300, "cancellous bone")
    plaque_hu: Range = Range(40, 90, "non-calcified plaque 30-130 HU (shared/REFERENCE.md)")
    # thorax (generator 2.0), re-drawn around the real arterial-phase chest CT (-801, -88, 124 HU)
    ivc_hu: Range = Range(80, 180, "unopacified or barely opacified venous return from below")
    cartilage_hu: Range = Range(100, 200, "costal cartilage, partly calcified")
    stomach_hu: Range = Range(10, 40, "gastric contents")
    # centred so that the measured lung median (about 10 HU above the drawn value: partial volume of the lung
    # vessels) lands on the real chest CT's -801 HU; +/- 20 HU between patients is a modelling choice
    chest_lung_hu: Range = Range(-832, -792, "real chest CT lung median -801 HU")
    chest_fat_hu: Range = Range(-100, -82, "real chest CT fat peak -88 HU")
    chest_myocardium_hu: Range = Range(110, 135, "real chest CT myocardium 124 HU")
    # noise: generator 1.0's SD; in realistic mode its ratio to the midpoint is the dose factor
    noise_sd_hu: Range = Range(15, 30, "generator 1.0 image noise; realistic: dose factor 0.67-1.33")
    noise_mid_hu: float = 22.5  # midpoint of noise_sd_hu: dose factor 1
    kernels: dict[str, Kernel] = field(default_factory=lambda: dict(KERNELS))


RANGES = AcquisitionRanges()

# What a user may ask for: wider than the drawn ranges, for shifted evaluation sets.
HEART_RATE_LIMITS_BPM = (40.0, 120.0)  # the motion model blurs 0.5-4 mm over this span
BODY_SIZE_LIMITS_SD = (-2.5, 2.5)  # the thorax is laid out for about this span of body sizes
SEXES = ("male", "female")


@dataclass(frozen=True)
class Acquisition:
    """Acquisition overrides of a realistic phantom; None keeps the seed's draw.

    Args:
        sex: "male" or "female": heart, aortic root, wall and body size follow it.
        body_size_sd: body habitus in population SDs (-2.5 to 2.5): heart and body size, hence noise.
        heart_rate_bpm: 40-120 bpm; motion blur at the mid RCA grows with it.
        kernel: reconstruction kernel, one of :data:`KERNELS` ("soft", "standard", "sharp").

    Raises:
        AcquisitionError: a value outside its limits.
    """

    sex: str | None = None
    body_size_sd: float | None = None
    heart_rate_bpm: float | None = None
    kernel: str | None = None

    def __post_init__(self) -> None:
        if self.sex is not None and self.sex not in SEXES:
            raise AcquisitionError(f"sex must be 'male' or 'female', got {self.sex!r}")
        lo, hi = BODY_SIZE_LIMITS_SD
        if self.body_size_sd is not None and not lo <= self.body_size_sd <= hi:
            raise AcquisitionError(f"body size must be between {lo} and {hi} population SDs, got {self.body_size_sd}")
        lo, hi = HEART_RATE_LIMITS_BPM
        if self.heart_rate_bpm is not None and not lo <= self.heart_rate_bpm <= hi:
            raise AcquisitionError(f"heart rate must be between {lo:g} and {hi:g} bpm, got {self.heart_rate_bpm}")
        if self.kernel is not None and self.kernel not in KERNELS:
            raise AcquisitionError(f"unknown kernel {self.kernel!r}; choose one of {', '.join(KERNELS)}")

    @property
    def any(self) -> bool:
        """Whether any knob is set (an override needs the realistic generator)."""
        return any(v is not None for v in (self.sex, self.body_size_sd, self.heart_rate_bpm, self.kernel))


def draw_patient(rng: np.random.Generator, acquisition: Acquisition | None = None) -> tuple[str, float]:
    """Sex and body size (population SDs) from the thorax stream; overrides replace them after the draw."""
    sex = "male" if rng.random() < RANGES.male_share else "female"
    clip = RANGES.body_size_clip_sd
    habitus = float(np.clip(rng.normal(), -clip, clip))
    if acquisition is not None:
        sex = acquisition.sex or sex
        habitus = habitus if acquisition.body_size_sd is None else float(acquisition.body_size_sd)
    return sex, habitus


def draw_heart_rate(rng: np.random.Generator, acquisition: Acquisition | None = None) -> float:
    """Heart rate (bpm) from the physics stream, drawn first there as it always was; an override replaces it."""
    hr = RANGES.heart_rate_bpm.draw(rng)
    if acquisition is not None and acquisition.heart_rate_bpm is not None:
        hr = float(acquisition.heart_rate_bpm)
    return hr


def kernel_of(acquisition: Acquisition | None) -> Kernel:
    return KERNELS[(acquisition.kernel if acquisition is not None else None) or DEFAULT_KERNEL]


def with_kernel(physics: Physics, acquisition: Acquisition | None) -> Physics:
    """``physics`` with the noise texture of the asked (or default) reconstruction kernel."""
    return replace(physics, nps_peak_per_mm=kernel_of(acquisition).nps_peak_per_mm)


def record(thorax: Thorax, physics: Physics, acquisition: Acquisition | None) -> PhantomAcquisition:
    """What the case's manifest states about its acquisition."""
    kernel = (acquisition.kernel if acquisition is not None else None) or DEFAULT_KERNEL
    return PhantomAcquisition(sex=thorax.sex, body_diameter_mm=round(thorax.body_diameter_mm, 1),
                              heart_rate_bpm=round(physics.heart_rate_bpm, 1), motion_mm=round(physics.motion_mm, 2),
                              kernel=kernel, nps_peak_per_mm=physics.nps_peak_per_mm)


def draw_contrast(rng: np.random.Generator) -> Contrast:
    """Every tissue's HU from the case's main stream (generator 1.0's draws, in their order)."""
    r = RANGES
    left = r.blood_left_hu.draw(rng)
    right = left * float(rng.choice([r.right_ratio_late.draw(rng), r.right_ratio_even.draw(rng)]))
    return Contrast(blood_left=left, blood_right=right, myocardium=r.myocardium_hu.draw(rng),
                    fat=r.fat_hu.draw(rng), lung=r.lung_hu.draw(rng), muscle=r.muscle_hu.draw(rng),
                    cortical=r.cortical_hu.draw(rng), cancellous=r.cancellous_hu.draw(rng),
                    plaque=r.plaque_hu.draw(rng))


def draw_noise_sd(rng: np.random.Generator) -> float:
    """Generator 1.0's noise SD (HU) from the main stream; realistic mode reads it as a dose factor."""
    return RANGES.noise_sd_hu.draw(rng)


def thorax_contrast(contrast: Contrast, thorax: Thorax, rng: np.random.Generator,
                    timing_rng: np.random.Generator) -> Contrast:
    """Venous inflow and other thoracic tissues (physics stream), and the arterial phase (its own stream).

    The right heart keeps its drawn ratio to the left when the arterial phase replaces the left-heart HU.
    """
    r = RANGES
    out = replace(contrast, svc=float(thorax.contrast_inflow_hu), ivc=r.ivc_hu.draw(rng),
                  cartilage=r.cartilage_hu.draw(rng), stomach=r.stomach_hu.draw(rng),
                  lung=r.chest_lung_hu.draw(rng), fat=r.chest_fat_hu.draw(rng),
                  myocardium=r.chest_myocardium_hu.draw(rng))
    return with_blood(out, r.arterial_phase.draw(timing_rng))


def with_blood(contrast: Contrast, blood_left_hu: float) -> Contrast:
    """``contrast`` with the left heart at ``blood_left_hu``; the right heart keeps its ratio to the left."""
    ratio = contrast.blood_right / contrast.blood_left
    return replace(contrast, blood_left=float(blood_left_hu), blood_right=float(blood_left_hu) * ratio)


__all__ = ["Acquisition", "AcquisitionError", "AcquisitionRanges", "ArterialPhase", "KERNELS", "Kernel", "RANGES",
           "Range", "draw_contrast", "draw_heart_rate", "draw_noise_sd", "draw_patient", "kernel_of",
           "record", "thorax_contrast", "with_blood", "with_kernel"]
