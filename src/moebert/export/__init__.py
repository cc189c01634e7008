"""A trained model as a folder in the Hugging Face layout, loadable without this package (`moebert export`), one
module a job: folder.py writes the folder (`export`), sources.py the model source it ships, card.py its model
card (README.md) with the YAML metadata of metadata.py and the numbers of results.py, hub.py pushes it to the
Hub (`push_to_hub`)."""
