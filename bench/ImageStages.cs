using System.Buffers;
using Microsoft.ML.Anomaly.Vision;

/// <summary>Scoring's first two stages as the transformer runs them on a batch: decode the files, then resize and normalise, one image per core.</summary>
internal static class ImageStages
{
    /// <summary>
    /// Decodes <paramref name="count"/> files from <paramref name="start"/> and writes them resized to
    /// <paramref name="size"/>² and normalised into <paramref name="images"/>; <paramref name="time"/> times stage 0
    /// (decode) and stage 1 (resize and normalise).
    /// </summary>
    public static void Load(string[] paths, int start, int count, int size, float[] images, Action<int, Action> time)
    {
        int imageFloats = 3 * size * size;
        var decoded = new (byte[] Pixels, int Height, int Width)[count];
        time(0, () => Parallel.For(0, count, i =>
        {
            byte[] pixels = ImageTensorConverter.DecodeRgba(paths[start + i], ImageAnomalyDetectorOptions.DefaultMaxImagePixels, out int height, out int width);
            decoded[i] = (pixels, height, width);
        }));
        time(1, () => Parallel.For(0, count, i =>
        {
            var (pixels, height, width) = decoded[i];
            ImageTensorConverter.ToNormalizedChw(pixels, height, width, 4 * width, bgr: false, size, size, images.AsSpan(i * imageFloats, imageFloats));
        }));
        foreach (var (pixels, _, _) in decoded)
            ArrayPool<byte>.Shared.Return(pixels);
    }
}
