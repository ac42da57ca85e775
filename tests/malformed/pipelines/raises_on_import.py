SETTINGS = {"epochs": 3}
EPOCHS = SETTINGS["epoch"]
