"""What the simulated service offers: regions, their GPU types and driver versions, and stock."""

from __future__ import annotations

from dataclasses import dataclass, field

from together_operator.together.models import ClusterDriverVersionInfo, Region, RegionListResponse

_OS = "ubuntu-22.04"


def _drivers(region: str, pairs: list[tuple[str, str]]) -> list[ClusterDriverVersionInfo]:
    return [
        ClusterDriverVersionInfo(
            cuda_version=cuda,
            nvidia_driver_version=driver,
            id=f"{region}-cuda{cuda}-nv{driver}",
            os=_OS,
        )
        for cuda, driver in pairs
    ]


def default_regions() -> list[Region]:
    """The regions the simulator offers unless told otherwise."""
    return [
        Region(
            name="us-central-8",
            supported_instance_types=["H100_SXM", "H200_SXM", "B200_SXM"],
            driver_versions=_drivers(
                "us-central-8", [("12.5", "555"), ("12.6", "560"), ("12.8", "570")]
            ),
        ),
        Region(
            name="us-central-4",
            supported_instance_types=["H100_SXM", "L40_PCIE"],
            driver_versions=_drivers("us-central-4", [("12.5", "555"), ("12.6", "565")]),
        ),
        Region(
            name="eu-north-2",
            supported_instance_types=["H200_SXM", "B300_SXM"],
            driver_versions=_drivers("eu-north-2", [("12.8", "570")]),
        ),
    ]


@dataclass
class Stock:
    """GPUs a region has for one GPU type: on-demand (incl. reserved) and preemptible."""

    gpus: int = 256
    preemptible_gpus: int = 64


@dataclass
class Catalog:
    """Regions on offer and the stock of each (region, GPU type)."""

    regions: list[Region] = field(default_factory=default_regions)
    stock: dict[tuple[str, str], Stock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for region in self.regions:
            for gpu_type in region.supported_instance_types:
                self.stock.setdefault((region.name, gpu_type), Stock())

    def region(self, name: str) -> Region | None:
        """The region called `name`, if offered."""
        return next((region for region in self.regions if region.name == name), None)

    def region_list(self) -> RegionListResponse:
        """The body of `GET /v1/compute/regions`."""
        return RegionListResponse(regions=self.regions)

    def stock_of(self, region: str, gpu_type: str) -> Stock:
        """The stock of `gpu_type` in `region` (none when not offered there)."""
        return self.stock.get((region, gpu_type), Stock(gpus=0, preemptible_gpus=0))

    def set_stock(
        self, region: str, gpu_type: str, *, gpus: int | None, preemptible_gpus: int | None
    ) -> Stock:
        """Change the stock of `gpu_type` in `region`; a `None` count is left as it is."""
        stock = self.stock.setdefault((region, gpu_type), Stock())
        if gpus is not None:
            stock.gpus = gpus
        if preemptible_gpus is not None:
            stock.preemptible_gpus = preemptible_gpus
        return stock


def parse_stock(text: str) -> tuple[str, str, int, int | None]:
    """`REGION/GPU_TYPE=GPUS[:PREEMPTIBLE_GPUS]` as (region, GPU type, GPUs, preemptible)."""
    key, separator, counts = text.partition("=")
    region, slash, gpu_type = key.partition("/")
    gpus, _, preemptible = counts.partition(":")
    if not (separator and slash and region and gpu_type and gpus):
        raise ValueError(f"expected REGION/GPU_TYPE=GPUS[:PREEMPTIBLE_GPUS], got {text!r}")
    return region, gpu_type, int(gpus), int(preemptible) if preemptible else None
