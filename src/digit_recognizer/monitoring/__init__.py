"""After deployment: the prediction log the server writes, people's corrections, and the
drift monitor that reads both against the evaluation split as the champion sees it."""
