using SkiaSharp;

namespace InspectionService.Tests;

/// <summary>Image files made in the tests: encoded solid images, and damaged or foreign files.</summary>
internal static class TestImages
{
    /// <summary>A solid grey image of <paramref name="width"/> × <paramref name="height"/> in <paramref name="format"/>.</summary>
    public static byte[] Encode(int width, int height, SKEncodedImageFormat format = SKEncodedImageFormat.Png)
    {
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(new SKColor(120, 130, 140));
        using var data = bitmap.Encode(format, 90);
        return data.ToArray();
    }

    /// <summary>A solid 24-bit BMP (Skia encodes no BMP, so the header is written here).</summary>
    public static byte[] Bmp(int width, int height)
    {
        int stride = (3 * width + 3) & ~3;
        var bytes = new byte[54 + stride * height];
        var header = bytes.AsSpan();
        "BM"u8.CopyTo(header);
        BitConverter.TryWriteBytes(header[2..], bytes.Length);
        BitConverter.TryWriteBytes(header[10..], 54);
        BitConverter.TryWriteBytes(header[14..], 40);
        BitConverter.TryWriteBytes(header[18..], width);
        BitConverter.TryWriteBytes(header[22..], height);
        BitConverter.TryWriteBytes(header[26..], (short)1);
        BitConverter.TryWriteBytes(header[28..], (short)24);
        BitConverter.TryWriteBytes(header[34..], stride * height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bytes.AsSpan(54 + y * stride + 3 * x, 3).Fill((byte)(100 + x % 50));
        return bytes;
    }

    /// <summary>A 1×1 GIF (a real image in a format the service does not take).</summary>
    public static byte[] Gif { get; } = Convert.FromBase64String("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==");
}
