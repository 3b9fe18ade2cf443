"""Hydra configs of darla (a package so that an installed copy finds them): see/act/transfer/all.yaml
compose darla.yaml from the groups env/, vision_model/, agent/, experiment/, hydra/."""
