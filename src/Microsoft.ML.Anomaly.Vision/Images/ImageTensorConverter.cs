using System.Buffers;
using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Microsoft.ML.Data;
using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Turns images into the normalized planar tensors the detectors' backbones take: RGB channel order,
/// values scaled to [0, 1], then standardised with the ImageNet mean (0.485, 0.456, 0.406) and standard
/// deviation (0.229, 0.224, 0.225), in channel × height × width layout.
/// </summary>
/// <remarks>
/// Resizing follows torchvision's <c>Resize(size, antialias=True)</c> on a float tensor: separable linear
/// interpolation with pixel centres at half-integer positions (align_corners=False, edge pixels repeated);
/// when shrinking, the triangle filter is widened by the scale factor so every source pixel contributes
/// (the anti-aliasing PIL also uses). The horizontal pass runs first, in single precision on values that
/// are not rounded back to bytes. <see cref="MLImage"/> always holds four bytes per pixel: grey images
/// arrive with three equal colour channels, and the alpha byte is ignored. Files this library decodes itself
/// (<see cref="LoadImage"/>) hold colours not multiplied by alpha; images decoded by ML.NET's <c>LoadImages</c> hold
/// colours premultiplied by alpha, as its decoder delivers them.
/// </remarks>
internal static class ImageTensorConverter
{
    /// <summary>Per-channel mean (R, G, B) subtracted after scaling to [0, 1].</summary>
    public static ReadOnlySpan<float> Mean => [0.485f, 0.456f, 0.406f];

    /// <summary>Per-channel standard deviation (R, G, B) divided by after subtracting the mean.</summary>
    public static ReadOnlySpan<float> StandardDeviation => [0.229f, 0.224f, 0.225f];

    /// <summary>
    /// Resizes <paramref name="image"/> to <paramref name="height"/> × <paramref name="width"/> and writes
    /// it normalized as 3 × height × width floats (R plane, G plane, B plane) to the start of
    /// <paramref name="destination"/>.
    /// </summary>
    /// <param name="image">The image; its pixel format must be BGRA32 or RGBA32.</param>
    /// <param name="height">Output height in pixels (positive).</param>
    /// <param name="width">Output width in pixels (positive).</param>
    /// <param name="destination">At least 3 × height × width floats.</param>
    public static void ToNormalizedChw(MLImage image, int height, int width, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        bool bgr = image.PixelFormat switch
        {
            MLPixelFormat.Bgra32 => true,
            MLPixelFormat.Rgba32 => false,
            var other => throw new ArgumentException($"Images with pixel format {other} are not supported; BGRA32 or RGBA32 is required.", nameof(image)),
        };
        ReadOnlySpan<byte> pixels = image.Pixels;
        int stride = pixels.Length / image.Height;
        if (stride < 4 * image.Width)
            throw new ArgumentException($"The image's pixel buffer ({pixels.Length} bytes) is too small for {image.Width}×{image.Height} four-byte pixels.", nameof(image));
        ToNormalizedChw(pixels, image.Height, image.Width, stride, bgr, height, width, destination);
    }

    /// <summary>
    /// Decodes the image file at <paramref name="path"/> strictly (as <see cref="LoadImage"/> does), resizes it to
    /// <paramref name="height"/> × <paramref name="width"/> and writes it normalized as 3 × height × width floats to
    /// the start of <paramref name="destination"/>. The decoded pixels live in a pooled buffer, never in an
    /// <see cref="MLImage"/>: scoring decodes megabytes per image, and fresh buffers cost page faults.
    /// </summary>
    /// <exception cref="ArgumentException">The path is null or empty.</exception>
    /// <exception cref="FileNotFoundException">No file exists at the path.</exception>
    /// <exception cref="InvalidDataException">The file is not a complete image, not a regular file, or larger than <paramref name="maxPixels"/>.</exception>
    public static void LoadNormalizedChw(string path, int height, int width, Span<float> destination, long maxPixels)
    {
        byte[] pixels = DecodeRgba(path, maxPixels, out int inHeight, out int inWidth);
        try
        {
            ToNormalizedChw(pixels, inHeight, inWidth, 4 * inWidth, bgr: false, height, width, destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pixels);
        }
    }

    /// <summary>The resize and normalization of <see cref="ToNormalizedChw(MLImage, int, int, Span{float})"/> on four-byte pixels, rows <paramref name="stride"/> bytes apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToNormalizedChw(ReadOnlySpan<byte> pixels, int inHeight, int inWidth, int stride, bool bgr,
        int height, int width, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        long needed = 3L * height * width;
        if (destination.Length < needed)
            throw new ArgumentException($"The destination holds {destination.Length} floats but a 3×{height}×{width} image needs {needed}.", nameof(destination));

        (int r, int g, int b) = bgr ? (2, 1, 0) : (0, 1, 2);
        int plane = height * width;
        Span<int> channelOffsets = [r, g, b];
        ReadOnlySpan<float> mean = Mean, std = StandardDeviation;

        if (inHeight == height && inWidth == width)
        {
            for (int c = 0; c < 3; c++)
            {
                Span<float> dst = destination.Slice(c * plane, plane);
                float scale = 1f / (255f * std[c]), shift = mean[c] / std[c];
                int offset = channelOffsets[c];
                for (int y = 0; y < height; y++)
                {
                    ReadOnlySpan<byte> row = pixels.Slice(y * stride, 4 * width);
                    for (int x = 0; x < width; x++)
                        dst[y * width + x] = row[4 * x + offset] * scale - shift;
                }
            }
            return;
        }

        ResampleWeights horizontal = ResampleWeights.Create(inWidth, width);
        ResampleWeights vertical = ResampleWeights.Create(inHeight, height);

        // Horizontal pass: input rows (all of them) × output columns, in [0, 1], written as planes. A pixel's four bytes
        // are filtered at once, one lane per byte; each lane adds in the order a channel on its own would.
        // Every output column takes the same number of taps: weights past a column's own taps are zero, and the row has
        // zero pixels past its end, so the extra terms add exactly nothing.
        float[] rows = ArrayPool<float>.Shared.Rent(3 * inHeight * width);
        int taps = horizontal.Taps;
        ReadOnlySpan<float> allWeights = horizontal.Weights;
        var pixelRow = new Vector128<float>[inWidth + taps];
        for (int y = 0; y < inHeight; y++)
        {
            ReadOnlySpan<byte> row = pixels.Slice(y * stride, 4 * inWidth);
            for (int x = 0; x < inWidth; x++)
            {
                var bytes = Vector128.CreateScalarUnsafe(MemoryMarshal.Read<uint>(row.Slice(4 * x, 4))).AsByte();
                pixelRow[x] = Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(bytes)).AsInt32());
            }
            for (int x = 0; x < width; x++)
            {
                ReadOnlySpan<Vector128<float>> source = pixelRow.AsSpan(horizontal.Starts[x], taps);
                ReadOnlySpan<float> weights = allWeights.Slice(x * taps, taps);
                Vector128<float> sum = Vector128<float>.Zero;
                for (int k = 0; k < taps; k++)
                    sum += Vector128.Create(weights[k]) * source[k];
                sum *= 1f / 255f;
                // Constant lanes: a lane index known only at run time would send the vector through memory.
                float first = sum.GetElement(0), second = sum.GetElement(1), third = sum.GetElement(2);
                rows[y * width + x] = r == 0 ? first : third;
                rows[(inHeight + y) * width + x] = second;
                rows[(2 * inHeight + y) * width + x] = r == 0 ? third : first;
            }
        }

        // Vertical pass and normalization.
        for (int c = 0; c < 3; c++)
        {
            float invStd = 1f / std[c], m = mean[c];
            Span<float> dst = destination.Slice(c * plane, plane);
            for (int y = 0; y < height; y++)
            {
                int start = vertical.Starts[y];
                ReadOnlySpan<float> weights = vertical.WeightsOf(y);
                Span<float> outRow = dst.Slice(y * width, width);
                outRow.Clear();
                for (int k = 0; k < weights.Length; k++)
                    TensorPrimitives.MultiplyAdd(rows.AsSpan((c * inHeight + start + k) * width, width), weights[k], outRow, outRow);
                TensorPrimitives.Subtract(outRow, m, outRow);
                TensorPrimitives.Multiply(outRow, invStd, outRow);
            }
        }
        ArrayPool<float>.Shared.Return(rows);
    }

    /// <summary>
    /// Decodes an image file strictly, as opaque RGB: a truncated or corrupt file is an error (a lenient decoder would
    /// hand on the rows it read and fill the rest), and an alpha channel is dropped without multiplying the colours by
    /// it, as PIL's <c>convert("RGB")</c> does for torchvision.
    /// </summary>
    /// <param name="path">Path of a PNG, JPEG, BMP, GIF or WebP file.</param>
    /// <param name="maxPixels">Largest accepted width × height (<see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>).</param>
    /// <returns>The decoded image (RGBA32 with every alpha byte 255); the caller disposes it.</returns>
    /// <exception cref="ArgumentException">The path is null or empty.</exception>
    /// <exception cref="FileNotFoundException">No file exists at the path.</exception>
    /// <exception cref="InvalidDataException">
    /// The file is not a complete image, not a regular file, or larger than <paramref name="maxPixels"/> (the message names the file and the finding).
    /// </exception>
    public static MLImage LoadImage(string path, long maxPixels = ImageAnomalyDetectorOptions.DefaultMaxImagePixels)
    {
        byte[] pixels = DecodeRgba(path, maxPixels, out int height, out int width);
        try
        {
            Span<byte> image = pixels.AsSpan(0, 4 * height * width);
            // Every alpha byte (the high byte of each little-endian RGBA word) set to 255.
            var words = MemoryMarshal.Cast<byte, uint>(image);
            TensorPrimitives.BitwiseOr(words, 0xFF000000u, words);
            return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, image);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pixels);
        }
    }

    /// <summary>
    /// Decodes the file at <paramref name="path"/> strictly into RGBA bytes, colours not multiplied by alpha, rows
    /// packed; the buffer comes from <see cref="ArrayPool{T}.Shared"/> (it may be longer) and goes back to it.
    /// </summary>
    /// <remarks>
    /// Design: every image file the library reads comes through here, so the checks that keep a hostile file from taking
    /// the process down live here once. The path must be a regular file with data: a FIFO, socket or device has no size
    /// (opening a FIFO blocks until someone writes to it, a device may never end). The header's width × height is checked
    /// against <paramref name="maxPixels"/> in 64-bit arithmetic before the pixel buffer is allocated: a header of a few
    /// bytes can claim billions of pixels (and 32768 × 32769 × 4 bytes wraps a 32-bit size to 128 KiB), and a truncated
    /// file only turns out to be one after its buffer has been filled.
    /// </remarks>
    public static byte[] DecodeRgba(string path, long maxPixels, out int height, out int width)
    {
        using SKCodec codec = OpenCodec(path);
        CheckImageSize($"Image file '{path}'", codec.Info.Width, codec.Info.Height, maxPixels);
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] pixels = ArrayPool<byte>.Shared.Rent(checked(4 * info.Width * info.Height));
        SKCodecResult decoded;
        unsafe
        {
            fixed (byte* destination = pixels)
                decoded = codec.GetPixels(info, (IntPtr)destination);
        }
        if (decoded != SKCodecResult.Success)
        {
            ArrayPool<byte>.Shared.Return(pixels);
            throw new InvalidDataException(decoded == SKCodecResult.IncompleteInput
                ? $"Image file '{path}' is incomplete: it ends before the image data does (a truncated or partly written file)."
                : $"Image file '{path}' could not be decoded: {decoded} (a corrupt file or an unsupported variant of the format).");
        }
        height = info.Height;
        width = info.Width;
        return pixels;
    }

    /// <summary>Reads the width and height from the header of the image file at <paramref name="path"/>, decoding no pixel.</summary>
    /// <exception cref="FileNotFoundException">No file exists at the path.</exception>
    /// <exception cref="InvalidDataException">The file is not a regular file or not an image.</exception>
    public static (int Height, int Width) ReadImageSize(string path)
    {
        using SKCodec codec = OpenCodec(path);
        return (codec.Info.Height, codec.Info.Width);
    }

    /// <summary>Opens a decoder on <paramref name="path"/>, which must name a regular file with data (see <see cref="DecodeRgba"/>); reads only the header.</summary>
    private static SKCodec OpenCodec(string path)
    {
        if (string.IsNullOrEmpty(path))
            throw new ArgumentException("The image path is null or empty.", nameof(path));
        if (!File.Exists(path))
            throw new FileNotFoundException(Directory.Exists(path)
                ? $"Image path '{path}' is a directory, not an image file."
                : $"Image file '{path}' does not exist.", path);
        // The size comes from the file system, without opening the file: a FIFO, socket or device reports none.
        if (new FileInfo(path).Length == 0)
            throw new InvalidDataException(
                $"Image path '{path}' is empty or not a regular file (a FIFO, socket or device): only image files with data are read.");
        return SKCodec.Create(path, out SKCodecResult opened)
            ?? throw new InvalidDataException($"Image file '{path}' could not be decoded as an image (corrupt file or unsupported format: {opened}).");
    }

    /// <summary>Throws when a <paramref name="width"/> × <paramref name="height"/> image is above <paramref name="maxPixels"/>; <paramref name="image"/> names it.</summary>
    public static void CheckImageSize(string image, int width, int height, long maxPixels)
    {
        long pixels = (long)width * height;
        if (pixels > maxPixels)
        {
            var invariant = System.Globalization.CultureInfo.InvariantCulture;
            throw new InvalidDataException(string.Create(invariant,
                $"{image} is {width}×{height} pixels ({pixels:N0}), above the limit of {maxPixels:N0} pixels " +
                $"({nameof(ImageAnomalyDetectorOptions.MaxImagePixels)}); raise the limit if images this large are expected."));
        }
    }

    /// <summary>Per output pixel: the first source pixel and the normalized filter weights (torchvision's anti-aliased linear filter).</summary>
    private sealed class ResampleWeights
    {
        private readonly float[] _weights;
        private readonly int _taps;

        private ResampleWeights(int[] starts, int[] counts, float[] weights, int taps)
        {
            Starts = starts;
            Counts = counts;
            _weights = weights;
            _taps = taps;
        }

        public int[] Starts { get; }

        public int[] Counts { get; }

        /// <summary>Taps per output pixel, the most any pixel has.</summary>
        public int Taps => _taps;

        /// <summary>All weights, <see cref="Taps"/> per output pixel, zero past the pixel's <see cref="Counts"/>.</summary>
        public ReadOnlySpan<float> Weights => _weights;

        public ReadOnlySpan<float> WeightsOf(int i) => _weights.AsSpan(i * _taps, Counts[i]);

        public static ResampleWeights Create(int inSize, int outSize)
        {
            double scale = (double)inSize / outSize;
            // Triangle filter of radius 1, widened by the scale factor when shrinking.
            double support = scale >= 1.0 ? scale : 1.0;
            double invScale = scale >= 1.0 ? 1.0 / scale : 1.0;
            int taps = (int)Math.Ceiling(support) * 2 + 1;
            var starts = new int[outSize];
            var counts = new int[outSize];
            var weights = new float[outSize * taps];
            Span<double> raw = stackalloc double[taps];
            for (int i = 0; i < outSize; i++)
            {
                double center = scale * (i + 0.5);
                int min = Math.Max((int)(center - support + 0.5), 0);
                int max = Math.Min((int)(center + support + 0.5), inSize);
                int count = Math.Min(max - min, taps);
                double total = 0;
                for (int k = 0; k < count; k++)
                {
                    double t = Math.Abs((min + k - center + 0.5) * invScale);
                    raw[k] = t < 1.0 ? 1.0 - t : 0.0;
                    total += raw[k];
                }
                for (int k = 0; k < count; k++)
                    weights[i * taps + k] = total > 0 ? (float)(raw[k] / total) : 0f;
                starts[i] = min;
                counts[i] = count;
            }
            return new ResampleWeights(starts, counts, weights, taps);
        }
    }
}
