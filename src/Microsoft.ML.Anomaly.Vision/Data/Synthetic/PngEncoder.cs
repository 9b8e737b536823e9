using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Writes 8-bit grey, grey + alpha, RGB or RGBA PNG files (no filtering, zlib compression).</summary>
internal static class PngEncoder
{
    private static readonly uint[] s_crcTable = BuildCrcTable();

    /// <summary>
    /// Writes <paramref name="pixels"/> (row-major, <paramref name="channels"/> = 1 for grey, 2 for grey + alpha, 3 for RGB,
    /// 4 for RGBA, colours not premultiplied) as a PNG file.
    /// </summary>
    public static void Write(string path, ReadOnlySpan<byte> pixels, int width, int height, int channels)
    {
        byte[] copy = pixels.ToArray();
        AtomicFile.Write(path, file => Write(file, copy, width, height, channels));
    }

    public static void Write(Stream output, ReadOnlySpan<byte> pixels, int width, int height, int channels)
    {
        if (channels is not (1 or 2 or 3 or 4))
        {
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "Only grey (1), grey + alpha (2), RGB (3) or RGBA (4) images are written.");
        }

        int stride = width * channels;
        if (pixels.Length != stride * height)
        {
            throw new ArgumentException($"Expected {stride * height} pixel bytes, got {pixels.Length}.", nameof(pixels));
        }

        output.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);

        Span<byte> header = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], height);
        header[8] = 8;                                  // bit depth
        header[9] = channels switch                     // colour type: grey, grey + alpha, truecolour, truecolour + alpha
        {
            1 => 0,
            2 => 4,
            3 => 2,
            _ => 6,
        };
        header[10] = 0;                                 // deflate
        header[11] = 0;                                 // adaptive filtering (every row uses filter 0)
        header[12] = 0;                                 // no interlace
        WriteChunk(output, "IHDR", header);

        using (var compressed = new MemoryStream((stride + 1) * height / 2))
        {
            using (var zlib = new ZLibStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
            {
                for (int y = 0; y < height; y++)
                {
                    zlib.WriteByte(0);
                    zlib.Write(pixels.Slice(y * stride, stride));
                }
            }

            WriteChunk(output, "IDAT", compressed.GetBuffer().AsSpan(0, (int)compressed.Length));
        }

        WriteChunk(output, "IEND", ReadOnlySpan<byte>.Empty);
    }

    private static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        Encoding.ASCII.GetBytes(type, head[4..]);
        output.Write(head);
        output.Write(data);
        uint crc = Crc(0xFFFFFFFFu, head[4..]);
        crc = Crc(crc, data) ^ 0xFFFFFFFFu;
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(tail, crc);
        output.Write(tail);
    }

    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
        {
            crc = s_crcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }
}
