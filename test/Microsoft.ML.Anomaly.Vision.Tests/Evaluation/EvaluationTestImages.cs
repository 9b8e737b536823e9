using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Tests.Evaluation;

/// <summary>Writes and reads small PNG files for the evaluation and report tests.</summary>
internal static class EvaluationTestImages
{
    public static string NewFolder() => TestSupport.TestImages.NewDirectory();

    /// <summary>Writes an RGB PNG; <paramref name="color"/> gives (r, g, b) for pixel (y, x).</summary>
    public static string WritePng(string path, int height, int width, Func<int, int, (byte R, byte G, byte B)> color)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = color(y, x);
                bitmap.SetPixel(x, y, new SKColor(r, g, b));
            }
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    /// <summary>Writes an 8-bit grayscale PNG (as MVTec AD ground-truth masks are stored).</summary>
    public static string WriteGrayPng(string path, int height, int width, Func<int, int, byte> value)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var pixels = new byte[height * width];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                pixels[(y * width) + x] = value(y, x);
        using var image = SKImage.FromPixelCopy(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque), pixels, width);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    public static SKBitmap ReadPng(string path) =>
        SKBitmap.Decode(path) ?? throw new InvalidDataException($"'{path}' is not a readable image.");
}
