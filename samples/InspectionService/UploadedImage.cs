using System.Buffers;
using SkiaSharp;

namespace InspectionService;

/// <summary>An upload refused before it reaches a model: the HTTP status and a message that names the problem.</summary>
public sealed class RefusedUploadException(int status, string title, string detail) : Exception(detail)
{
    /// <summary>The HTTP status to answer with.</summary>
    public int Status { get; } = status;

    /// <summary>The problem's short title.</summary>
    public string Title { get; } = title;
}

/// <summary>
/// Checks an uploaded file before it is stored or queued: a PNG, JPEG or BMP within the size and pixel limits that
/// decodes completely. A decoder that stops early would otherwise hand the model a half-grey image and a wrong score.
/// </summary>
public static class UploadedImage
{
    /// <summary>The file extension used to store an accepted image of each format.</summary>
    public static string Extension(SKEncodedImageFormat format) => format switch
    {
        SKEncodedImageFormat.Png => ".png",
        SKEncodedImageFormat.Jpeg => ".jpg",
        SKEncodedImageFormat.Bmp => ".bmp",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Only PNG, JPEG and BMP are accepted."),
    };

    /// <summary>Decodes <paramref name="bytes"/> fully and returns its format; throws <see cref="RefusedUploadException"/> otherwise.</summary>
    /// <param name="bytes">The uploaded file.</param>
    /// <param name="fileName">The client's file name, for messages.</param>
    /// <param name="maxPixels">The pixel limit (width × height).</param>
    public static SKEncodedImageFormat Check(ReadOnlyMemory<byte> bytes, string fileName, long maxPixels)
    {
        if (bytes.Length == 0)
            throw new RefusedUploadException(StatusCodes.Status400BadRequest, "Empty image", $"The uploaded file '{fileName}' is empty (0 bytes).");
        using var data = SKData.CreateCopy(bytes.Span);
        using var codec = SKCodec.Create(data);
        if (codec is null)
            throw new RefusedUploadException(StatusCodes.Status415UnsupportedMediaType, "Not an image",
                $"The uploaded file '{fileName}' is not an image: a PNG, JPEG or BMP file is expected.");
        if (codec.EncodedFormat is not (SKEncodedImageFormat.Png or SKEncodedImageFormat.Jpeg or SKEncodedImageFormat.Bmp))
            throw new RefusedUploadException(StatusCodes.Status415UnsupportedMediaType, "Unsupported image format",
                $"The uploaded file '{fileName}' is a {codec.EncodedFormat} image; a PNG, JPEG or BMP file is expected.");
        long pixels = (long)codec.Info.Width * codec.Info.Height;
        if (pixels > maxPixels)
            throw new RefusedUploadException(StatusCodes.Status413PayloadTooLarge, "Image too large",
                $"The uploaded image '{fileName}' has {codec.Info.Width}×{codec.Info.Height} = {pixels} pixels; the limit is {maxPixels}.");
        if (pixels == 0)
            throw new RefusedUploadException(StatusCodes.Status400BadRequest, "Empty image", $"The uploaded image '{fileName}' has no pixels.");

        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(info.BytesSize);
        try
        {
            SKCodecResult result;
            unsafe
            {
                fixed (byte* destination = buffer)
                    result = codec.GetPixels(info, (IntPtr)destination);
            }
            if (result != SKCodecResult.Success)
                throw new RefusedUploadException(StatusCodes.Status400BadRequest, "Damaged image", result == SKCodecResult.IncompleteInput
                    ? $"The uploaded image '{fileName}' is truncated: the file ends before the image data does."
                    : $"The uploaded image '{fileName}' could not be decoded: {result}.");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return codec.EncodedFormat;
    }
}
