"""The config base: from_dict / to_dict / replace / validation, shared by every config dataclass."""

from dataclasses import dataclass, field

import pytest

from ravlm_graph.utils.config import Config, check_int


@dataclass(frozen=True)
class Demo(Config):
    width: int
    sizes: tuple[int, ...] = (1, 2)
    names: list = field(default_factory=list)

    def validate(self) -> None:
        check_int("Demo", "width", self.width, 1, 1024)


def test_round_trip_and_replace():
    d = Demo.from_dict({"width": 3, "sizes": [4, 5], "names": ["a"]})
    assert d.sizes == (4, 5) and d.names == ["a"]  # lists become tuples only for tuple fields
    assert d.to_dict() == {"width": 3, "sizes": [4, 5], "names": ["a"]}
    assert Demo.from_dict(d.to_dict()) == d
    assert d.replace(width=7).width == 7
    with pytest.raises(ValueError, match=r"Demo.width: expected an integer <= 1024, found 5000"):
        d.replace(width=5000)


def test_errors_name_the_source_and_the_field():
    with pytest.raises(ValueError, match=r"x.json: unknown fields \['widht'\]; expected some of \['names', 'sizes', "
                                         r"'width'\]"):
        Demo.from_dict({"widht": 3}, "x.json")
    with pytest.raises(ValueError, match=r"x.json: missing required fields \['width'\]"):
        Demo.from_dict({}, "x.json")
    with pytest.raises(ValueError, match=r"x.json: Demo.width: expected an integer >= 1, found 0"):
        Demo.from_dict({"width": 0}, "x.json")
    with pytest.raises(ValueError, match=r"x.json: expected a JSON object of Demo fields, found list"):
        Demo.from_dict([1], "x.json")


def test_every_config_of_the_package_uses_the_base():
    from ravlm_graph.engine import EngineConfig
    from ravlm_graph.grounding.config import GroundingConfig
    from ravlm_graph.grounding.detectors.clip import ClipTaggerConfig
    from ravlm_graph.grounding.detectors.features import FeatureTaggerConfig
    from ravlm_graph.grounding.detectors.owl import OwlDetectorConfig
    from ravlm_graph.grounding.detectors.photo import PhotoDetectorConfig
    from ravlm_graph.grounding.detectors.tagger import TaggerConfig
    from ravlm_graph.models.csqa.configuration import CSQAConfig
    from ravlm_graph.models.hf_backbones.modeling import BackboneConfig
    from ravlm_graph.models.knowledge_vqa.configuration import KnowledgeVQAConfig
    from ravlm_graph.nn.fusion import FusionConfig
    from ravlm_graph.nn.gnn import GNNConfig
    from ravlm_graph.recipes import Recipe
    from ravlm_graph.retrieval.config import RetrievalConfig
    from ravlm_graph.training.loop import TrainConfig

    from ravlm_graph.grounding.vision.efficientnet_lite import EfficientNetLiteConfig

    for cls in (EngineConfig, EfficientNetLiteConfig, GroundingConfig, ClipTaggerConfig, FeatureTaggerConfig, OwlDetectorConfig, PhotoDetectorConfig, TaggerConfig,
                CSQAConfig, BackboneConfig, KnowledgeVQAConfig, FusionConfig, GNNConfig, Recipe, RetrievalConfig,
                TrainConfig):
        assert issubclass(cls, Config), cls
        # no hand-written from_dict except Recipe's (it moves the legacy top-level budget)
        assert cls.from_dict.__func__ is Config.from_dict.__func__ or cls is Recipe, cls
