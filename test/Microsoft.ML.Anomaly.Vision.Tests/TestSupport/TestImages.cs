using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

/// <summary>Small images made on the fly for tests.</summary>
internal static class TestImages
{
    /// <summary>An RGBA32 image of one colour.</summary>
    public static MLImage Uniform(int width, int height, byte r, byte g, byte b, byte a = 255)
    {
        byte[] pixels = new byte[width * height * 4];
        for (int i = 0; i < width * height; i++)
        {
            pixels[4 * i] = r;
            pixels[4 * i + 1] = g;
            pixels[4 * i + 2] = b;
            pixels[4 * i + 3] = a;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, pixels);
    }

    /// <summary>Writes a PNG of one colour and returns its path.</summary>
    public static string WriteUniformPng(string directory, string name, int width, int height, byte r, byte g, byte b)
    {
        string path = Path.Combine(directory, name);
        using MLImage image = Uniform(width, height, r, g, b);
        image.Save(path);
        return path;
    }

    /// <summary>ImageNet normalization of one byte value in channel <paramref name="channel"/> (0 = R).</summary>
    public static float Normalize(byte value, int channel)
    {
        float[] mean = [0.485f, 0.456f, 0.406f];
        float[] std = [0.229f, 0.224f, 0.225f];
        return (value / 255f - mean[channel]) / std[channel];
    }

    /// <summary>A new empty temporary directory under this test run's folder (<see cref="TestRunFolder"/>), deleted when the run ends.</summary>
    public static string NewDirectory() => Directory.CreateDirectory(Path.Combine(TestRunFolder.Path, Guid.NewGuid().ToString("N"))).FullName;
}

/// <summary>A row holding an image path.</summary>
public sealed class ImagePathRow
{
    /// <summary>The image file path.</summary>
    public string ImagePath { get; set; } = "";
}
