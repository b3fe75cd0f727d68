"""A file-relative factory used by full.yaml (the spec stage never imports it)."""


def build_cnn(channels: int = 3, image_size: int = 16):
    from neuronperf.zoo import small_cnn

    return small_cnn(channels=channels, image_size=image_size)
