"""Tables, plots, the claims check and the run manifest, read from the files the stages wrote; nothing here
imports a stage (only the speed CSV's columns, from moebert.speed)."""
