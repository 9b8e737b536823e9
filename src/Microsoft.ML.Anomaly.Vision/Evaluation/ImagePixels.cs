using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Evaluation;

/// <summary>Reading images and masks as plain pixel arrays, with nearest / bilinear resizing.</summary>
internal static class ImagePixels
{
    /// <summary>Loads an image file of at most <paramref name="maxPixels"/> pixels as row-major RGB bytes (3 per pixel). Errors name the path.</summary>
    public static byte[] LoadRgb(string path, long maxPixels, out int height, out int width)
    {
        MLImage image = ImageTensorConverter.LoadImage(path, maxPixels);
        using (image)
        {
            height = image.Height;
            width = image.Width;
            var pixels = image.Pixels;
            int bpp = image.BitsPerPixel / 8;
            if (bpp < 3)
                throw new InvalidDataException($"Image file '{path}' has an unsupported pixel layout ({image.BitsPerPixel} bits per pixel).");
            bool bgr = image.PixelFormat == MLPixelFormat.Bgra32;
            var rgb = new byte[height * width * 3];
            for (int i = 0, o = 0; i < height * width; i++, o += 3)
            {
                int s = i * bpp;
                rgb[o] = pixels[s + (bgr ? 2 : 0)];
                rgb[o + 1] = pixels[s + 1];
                rgb[o + 2] = pixels[s + (bgr ? 0 : 2)];
            }
            return rgb;
        }
    }

    /// <summary>
    /// Loads a ground-truth mask of at most <paramref name="maxPixels"/> pixels, resized by nearest neighbour to
    /// <paramref name="height"/>×<paramref name="width"/>; a pixel is anomalous when any colour channel is above 0.
    /// </summary>
    public static bool[] LoadMask(string path, int height, int width, long maxPixels) =>
        ResizeMask(LoadRgb(path, maxPixels, out int h, out int w), h, w, height, width);

    /// <summary>
    /// Loads the ground-truth mask of a labelled row as <see cref="LoadMask"/> does, once it is checked against the row:
    /// it must have the size of the row's image (a mask of another size would be resized, moving the defect it marks), and
    /// a row labelled good must have no defect pixel. <paramref name="row"/> names the row in the errors.
    /// </summary>
    /// <param name="path">The mask file.</param>
    /// <param name="height">Height of the mask returned (the anomaly map's).</param>
    /// <param name="width">Width of the mask returned.</param>
    /// <param name="maxPixels">Largest mask (and image) read, in pixels.</param>
    /// <param name="label">The row's label: true for an anomalous image.</param>
    /// <param name="imagePath">The row's image file, whose header gives its size; null or empty when unknown (no size check).</param>
    /// <param name="row">The row, for errors, e.g. "Mask path column 'MaskPath', row 3".</param>
    /// <exception cref="ArgumentException">The mask has another size than its image, or marks defects on a row labelled good.</exception>
    public static bool[] LoadRowMask(string path, int height, int width, long maxPixels, bool label, string? imagePath, string row)
    {
        byte[] rgb = LoadRgb(path, maxPixels, out int h, out int w);
        if (!string.IsNullOrEmpty(imagePath))
        {
            (int imageHeight, int imageWidth) = ImageTensorConverter.ReadImageSize(imagePath);
            if (imageHeight != h || imageWidth != w)
                throw new ArgumentException(
                    $"{row}: the mask '{path}' is {w}×{h} pixels but its image '{imagePath}' is {imageWidth}×{imageHeight}; " +
                    "a mask must have its image's size (resized, it would mark other pixels than the defect's).");
        }
        if (!label && rgb.AsSpan().IndexOfAnyExcept((byte)0) >= 0)
            throw new ArgumentException(
                $"{row}: the mask '{path}' marks defect pixels but the row's Label is false (a good image); " +
                "fix the label or the mask path (a good image has no mask, or an all-black one).");
        return ResizeMask(rgb, h, w, height, width);
    }

    /// <summary>Nearest-neighbour resize of an RGB mask to booleans: a pixel is anomalous when any channel is above 0.</summary>
    private static bool[] ResizeMask(byte[] rgb, int h, int w, int height, int width)
    {
        var mask = new bool[height * width];
        for (int y = 0; y < height; y++)
        {
            int sy = Math.Min(h - 1, (int)((long)y * h / height));
            for (int x = 0; x < width; x++)
            {
                int sx = Math.Min(w - 1, (int)((long)x * w / width));
                int s = ((sy * w) + sx) * 3;
                mask[(y * width) + x] = rgb[s] > 0 || rgb[s + 1] > 0 || rgb[s + 2] > 0;
            }
        }
        return mask;
    }

    /// <summary>Bilinear resize of RGB bytes (half-pixel centres, edge clamped).</summary>
    public static byte[] ResizeRgb(byte[] rgb, int height, int width, int outHeight, int outWidth)
    {
        if (height == outHeight && width == outWidth)
            return rgb;
        var result = new byte[outHeight * outWidth * 3];
        double sy = (double)height / outHeight, sx = (double)width / outWidth;
        for (int y = 0; y < outHeight; y++)
        {
            double fy = Math.Clamp(((y + 0.5) * sy) - 0.5, 0, height - 1);
            int y0 = (int)fy, y1 = Math.Min(y0 + 1, height - 1);
            double wy = fy - y0;
            for (int x = 0; x < outWidth; x++)
            {
                double fx = Math.Clamp(((x + 0.5) * sx) - 0.5, 0, width - 1);
                int x0 = (int)fx, x1 = Math.Min(x0 + 1, width - 1);
                double wx = fx - x0;
                for (int c = 0; c < 3; c++)
                {
                    double top = (rgb[(((y0 * width) + x0) * 3) + c] * (1 - wx)) + (rgb[(((y0 * width) + x1) * 3) + c] * wx);
                    double bottom = (rgb[(((y1 * width) + x0) * 3) + c] * (1 - wx)) + (rgb[(((y1 * width) + x1) * 3) + c] * wx);
                    result[(((y * outWidth) + x) * 3) + c] = (byte)Math.Clamp(Math.Round((top * (1 - wy)) + (bottom * wy)), 0, 255);
                }
            }
        }
        return result;
    }
}
