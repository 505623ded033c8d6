"""The English realiser of facts (ravlm_graph.utils.english)."""

import pytest

from kg_ingest import KnowledgeGraph
from ravlm_graph.utils.english import (RELATION_TEMPLATES, Realiser, article, comparative, display_name,
                                       kg_purposes, realise, surface_sentence)
from kg_ingest.relations import CONCEPTNET_RELATIONS


@pytest.mark.parametrize("fact, sentence", [
    # the examples
    (("knife", "UsedFor", "cut"), "a knife is used for cutting"),
    (("make_bread", "Causes", "bread"), "the effect of making bread is bread"),
    (("apple", "ReceivesAction", "eat"), "an apple can be eaten"),
    (("computer", "NotHasProperty", "be_use"), "a computer is not used"),
    (("computer", "HasProperty", "not_be_use"), "a computer is not used"),
    # slots and inflections
    (("eat", "Causes", "full"), "the effect of eating is being full"),
    (("weapon", "CapableOf", "be_use_to_harm_someone"), "a weapon can be used to harm someone"),
    (("person", "Desires", "drink_water"), "person wants to drink water"),
    (("person", "Desires", "time_alone"), "person wants time alone"),
    (("make_bread", "MotivatedByGoal", "eat_bread"), "you would make bread because you want to eat bread"),
    (("bathroom", "UsedFor", "wash_your_hand"), "a bathroom is used for washing your hand"),
    (("umbrella", "UsedFor", "transportation"), "an umbrella is used for transportation"),
    (("beach", "HasProperty", "sandy"), "a beach is sandy"),
    (("eat", "HasPrerequisite", "food"), "eating requires food"),
    (("live_room", "AtLocation", "house"), "living room can be found in a house"),
    (("hot", "Antonym", "cold"), "hot is the opposite of cold"),
    # comparatives (FVQA's WebChild facts)
    (("motorcycle", "MoreExpensive", "car"), "a motorcycle is more expensive than a car"),
    (("position", "MoreGood", "standing"), "position is better than standing"),
    (("balloon", "LessManeuverable", "airplane"), "a balloon is less maneuverable than an airplane"),
    (("snail", "MoreSlow", "turtle"), "a snail is slower than turtle"),
])
def test_realise(fact, sentence):
    assert realise(*fact) == sentence


def test_every_conceptnet_relation_with_a_template_realises_both_ends():
    for rel in CONCEPTNET_RELATIONS:
        s = realise("red_apple", rel, "sweet_fruit")
        assert "apple" in s and "fruit" in s and "_" not in s, (rel, s)
    assert set(RELATION_TEMPLATES) <= set(CONCEPTNET_RELATIONS)


def test_display_names_get_their_ing_back():
    assert display_name("live_room") == "living room"
    assert display_name("dine_room") == "dining room"
    assert display_name("eat_ice_cream") == "eating ice cream"
    # a modifier that is also a noun: only when the concept is used for that verb
    assert display_name("park_lot") == "park lot"
    assert display_name("park_lot", ["car", "park_car"]) == "parking lot"
    assert display_name("swim_pool", ["swim"]) == "swimming pool"
    assert display_name("fish_tank", ["hold_fish"]) == "fish tank"
    # neither a verb-only word nor a purpose: unchanged
    assert display_name("ice_cream") == "ice cream" and display_name("hot_dog") == "hot dog"
    assert display_name("apple") == "apple"
    # a modifier whose gerund is only a noun of its own meaning stays as it is
    assert display_name("even_number_of_leg") == "even number of leg"


def test_kg_purposes_drive_compound_names():
    kg = KnowledgeGraph.from_arrays(
        ["car", "fish_tank", "hold_fish", "park_car", "park_lot", "swim", "swim_pool"], ["UsedFor"],
        [1, 4, 6], [2, 3, 5], [0, 0, 0], [1.0, 1.0, 1.0])
    r = Realiser(kg_purposes(kg))
    assert r.name("park_lot") == "parking lot" and r.name("swim_pool") == "swimming pool"
    assert r.name("fish_tank") == "fish tank" and r.name("not_in_kg") == "not in kg"
    assert r.fact("car", "AtLocation", "park_lot") == "a car can be found in parking lot"
    assert Realiser().fact("car", "AtLocation", "park_lot") == "a car can be found in park lot"


def test_surface_text_and_helpers():
    assert surface_sentence("You are likely to find [[a knife]] in [[a kitchen]].") == \
        "You are likely to find a knife in a kitchen"
    r = Realiser()
    assert r.fact("knife", "AtLocation", "kitchen", surface="[[a knife]] is in [[a kitchen]]") == \
        "a knife is in a kitchen"
    assert Realiser(use_surface=False).fact("knife", "AtLocation", "kitchen", surface="[[a]] x [[b]]") == \
        "a knife can be found in a kitchen"
    # a surface text without [[ ]] spans is not ConceptNet's: the template is used
    assert r.fact("knife", "AtLocation", "kitchen", surface="junk") == "a knife can be found in a kitchen"
    assert article("apple") == "an" and article("unicorn") == "a" and article("hour") == "an"
    assert comparative("big") == "bigger" and comparative("expensive") == "more expensive"
    assert comparative("good") == "better" and comparative("natural", more=False) == "less natural"
    with pytest.raises(ValueError, match="expected one of np, npa, bare, ger, state, vp, inf, pp, adj, found 'xx'"):
        r.slot("apple", "xx")


def test_a_place_with_its_own_preposition_takes_the_templates_place():
    assert realise("necktie", "AtLocation", "in_closet") == "a necktie can be found in a closet"
    assert realise("cup", "AtLocation", "on_table") == "cup can be found on a table"
    assert realise("cup", "LocatedNear", "near_table") == "cup is located near a table"
    # a place without one, and a relation whose template ends otherwise, are unchanged
    assert realise("cup", "AtLocation", "table") == "cup can be found in a table"
    assert realise("knife", "UsedFor", "in_kitchen").startswith("a knife is used for")
