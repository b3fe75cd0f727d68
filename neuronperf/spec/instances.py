"""What each AWS Neuron instance family is made of, and which neuronperf path runs inference on it.

Plain data, no I/O: the spec stage checks ``instance_type`` against it, the Neuron backends check
the machine they run on, and the price table and the docs name its instances. NeuronCore counts here are *physical*; on Trn2/Trn3 the runtime presents logical
NeuronCores of ``lnc`` physical ones each (Logical NeuronCore configuration, LNC), so a
trn2.48xlarge shows 128 NeuronCores at LNC=1 and 64 at LNC=2. neuronperf counts what is really
there with ``neuron-ls`` at run time; this table is for planning, checking and the docs.

Sources (AWS Neuron documentation, read 2026; aws-neuron/aws-neuron-sdk at 81ce03a):

- NeuronCores per chip: "Inferentia Architecture" (four NeuronCore-v1), "Inferentia2
  Architecture" (two NeuronCore-v2), "Trainium Architecture" (two NeuronCore-v2), "Trainium2
  Architecture" (eight NeuronCore-v3), "Trainium3 Architecture" (eight NeuronCore-v4);
  https://awsdocs-neuron.readthedocs-hosted.com/en/latest/about-neuron/arch/neuron-hardware/
- Chips per instance: "Amazon EC2 Inf1 Architecture", "Amazon EC2 Inf2 Architecture",
  "Amazon EC2 Trn1/Trn1n Architecture", "Amazon EC2 Trn2 Architecture" (trn2.48xlarge and
  trn2u.48xlarge: 16 Trainium2 chips each), same folder.
- Trn3: "Amazon EC2 Trn3 Architecture" names two UltraServer configurations, Gen1 (4 servers of
  16 Trainium3 chips) and Gen2 (36 servers of 4 chips), but no EC2 instance size; the EKS
  UltraServer guide names a "trn3pds" instance type without a size. So there is no trn3 instance
  row below: neuronperf takes a Trn3 machine's counts from neuron-ls, and the family from an
  instance type that starts with "trn3".
- LNC: "Logical NeuronCore configuration" (LNC is 1 or 2, default 2, Trn2 and Trn3 only; the
  runtime variable NEURON_LOGICAL_NC_CONFIG and the compiler flag --logical-nc-config / -lnc must
  agree); the neuronx-cc reference ("--logical-nc-config ... Only available on trn2; Default: 2")
  and the NxD Inference API guide ("On Trn1 and Inf2, this defaults to 1. On Trn2, this defaults
  to 2"); NCC_EARG001 ("lnc=2 not supported on trn1").
- Paths: "About PyTorch on AWS Neuron" (torch-neuron for Inf1, torch-neuronx/XLA for Inf2 and
  Trn1, TorchNeuron for Trn2/Trn3); "What is TorchNeuron?" (public beta in Neuron 2.33, Trn2 and
  Trn3); "Torch/XLA support for Inference on Inf2 and Trn1 instances is now in maintenance mode
  starting with Neuron 2.31"; "Neuron no longer supports PyTorch/XLA inference on Trn2 and Trn3
  starting with Neuron 2.34"; the archived torch-neuron and TensorFlow pages ("no longer
  officially supported").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

#: The three ways neuronperf runs a torch model on Neuron, as the ``neuron_path`` column says.
#: native: TorchNeuron (torch-neuronx >= 2.10): eager ``.to("neuron")`` or
#: ``torch.compile(backend="neuron")``; xla-trace: torch-neuronx 2.9.x ``torch_neuronx.trace``;
#: inf1: torch-neuron ``torch.neuron.trace`` (and tensorflow-neuron) for Inferentia 1.
NEURON_PATHS = ("native", "xla-trace", "inf1")


@dataclass(frozen=True)
class NeuronFamily:
    """One instance family: its chip, NeuronCores per chip and the paths that serve it."""

    name: str
    chip: str
    core_version: str
    physical_cores_per_chip: int
    #: LNC values the family accepts; (1,) where the chip has no logical NeuronCores.
    lnc_choices: tuple[int, ...]
    default_lnc: int
    #: The path AWS documents for new inference on this family.
    path: str
    #: Paths that still run here but that AWS no longer supports for inference (with why).
    legacy_paths: Mapping[str, str]
    #: neuronx-cc's --target value for the family, when neuronx-cc compiles for it.
    compiler_target: Optional[str] = None


FAMILIES: Mapping[str, NeuronFamily] = {
    "inf1": NeuronFamily("inf1", "Inferentia", "NeuronCore-v1", 4, (1,), 1, "inf1", {}),
    "inf2": NeuronFamily("inf2", "Inferentia2", "NeuronCore-v2", 2, (1,), 1, "xla-trace", {}, "inf2"),
    "trn1": NeuronFamily("trn1", "Trainium", "NeuronCore-v2", 2, (1,), 1, "xla-trace", {}, "trn1"),
    "trn1n": NeuronFamily("trn1n", "Trainium", "NeuronCore-v2", 2, (1,), 1, "xla-trace", {}, "trn1n"),
    "trn2": NeuronFamily(
        "trn2", "Trainium2", "NeuronCore-v3", 8, (1, 2), 2, "native",
        {"xla-trace": "Neuron 2.34 ended PyTorch/XLA inference on Trn2/Trn3"}, "trn2",
    ),
    "trn2u": NeuronFamily(
        "trn2u", "Trainium2", "NeuronCore-v3", 8, (1, 2), 2, "native",
        {"xla-trace": "Neuron 2.34 ended PyTorch/XLA inference on Trn2/Trn3"}, "trn2",
    ),
    # neuronx-cc's reference lists targets inf2, trn1, trn1n and trn2 only: no Trn3 target is
    # documented, so none is named here.
    "trn3": NeuronFamily(
        "trn3", "Trainium3", "NeuronCore-v4", 8, (1, 2), 2, "native",
        {"xla-trace": "Neuron 2.34 ended PyTorch/XLA inference on Trn2/Trn3"},
    ),
}


@dataclass(frozen=True)
class InstanceFacts:
    """One instance size: its family and chip count."""

    instance_type: str
    family: str
    chips: int

    @property
    def physical_cores(self) -> int:
        return self.chips * FAMILIES[self.family].physical_cores_per_chip

    def logical_cores(self, lnc: int) -> int:
        """NeuronCores the runtime presents at ``lnc`` (the physical count when LNC is 1)."""
        return self.physical_cores // lnc


INSTANCES: Mapping[str, InstanceFacts] = {
    facts.instance_type: facts
    for facts in (
        InstanceFacts("inf1.xlarge", "inf1", 1),
        InstanceFacts("inf1.2xlarge", "inf1", 1),
        InstanceFacts("inf1.6xlarge", "inf1", 4),
        InstanceFacts("inf1.24xlarge", "inf1", 16),
        InstanceFacts("inf2.xlarge", "inf2", 1),
        InstanceFacts("inf2.8xlarge", "inf2", 1),
        InstanceFacts("inf2.24xlarge", "inf2", 6),
        InstanceFacts("inf2.48xlarge", "inf2", 12),
        InstanceFacts("trn1.2xlarge", "trn1", 1),
        InstanceFacts("trn1.32xlarge", "trn1", 16),
        InstanceFacts("trn1n.32xlarge", "trn1n", 16),
        InstanceFacts("trn2.48xlarge", "trn2", 16),
        InstanceFacts("trn2u.48xlarge", "trn2u", 16),
    )
}


def family_of(instance_type: Optional[str]) -> Optional[NeuronFamily]:
    """The family of an instance type ("trn2.48xlarge" -> trn2), or of a family name that the
    Neuron sysfs reports ("Inf2"); None for anything else (not a Neuron instance)."""
    if not instance_type:
        return None
    prefix = instance_type.strip().lower().split(".", 1)[0]
    if prefix in FAMILIES:
        return FAMILIES[prefix]
    if prefix.startswith("trn3"):  # trn3pds and the like: see the module docstring
        return FAMILIES["trn3"]
    return None


def paths_of(family: NeuronFamily) -> tuple[str, ...]:
    """Every path that runs on ``family``, the documented one first."""
    return (family.path, *family.legacy_paths)


#: (framework, compiler) on device_type neuron -> the path it takes.
COMPILER_PATHS: Mapping[tuple[str, str], str] = {
    ("torch", "native"): "native",
    ("torch", "native-compile"): "native",
    ("torch", "neuronx"): "xla-trace",
    # optimum-neuron exports through torch-neuronx's XLA tracing
    ("torch", "optimum"): "xla-trace",
    ("torch", "neuron"): "inf1",
    ("tensorflow", "neuron"): "inf1",
}
#: The compiler of each path (torch), for the messages.
PATH_COMPILERS: Mapping[str, str] = {
    "native": "native or native-compile (TorchNeuron, torch-neuronx 2.13/2.14)",
    "xla-trace": "neuronx (torch-neuronx 2.9.x)",
    "inf1": "neuron (torch-neuron)",
}


def family_problem(framework: str, compiler: str, instance_type: Optional[str]) -> Optional[str]:
    """Why ``compiler`` cannot run on ``instance_type``'s family (one line naming what the
    family runs), or None when it can or when either is unknown."""
    family = family_of(instance_type)
    path = COMPILER_PATHS.get((framework, compiler))
    if family is None or path is None or path in paths_of(family):
        return None
    return (
        f"compiler {compiler} takes the {path} path, which does not run on {instance_type} "
        f"({family.chip}, {family.core_version}); {family.name} runs compiler {PATH_COMPILERS[family.path]}"
    )


def lnc_problem(lnc: int, instance_type: Optional[str]) -> Optional[str]:
    """Why logical NeuronCore config ``lnc`` does not apply to ``instance_type``, or None."""
    family = family_of(instance_type)
    if family is None or lnc in family.lnc_choices:
        return None
    return (
        f"logical NeuronCore config {lnc} needs Trn2 or Trn3; {instance_type} ({family.chip}) does not group "
        f"its NeuronCores (LNC {', '.join(map(str, family.lnc_choices))} only)"
    )
