"""Measurements: image metrics (PSNR, SSIM, LPIPS, identity), NoW-style mesh accuracy,
the dataset evaluation behind ``vn3d eval`` (images and meshes), renders over photos."""
