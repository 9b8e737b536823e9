using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

/// <summary>Files that a careless reader would crash, hang or exhaust memory on: huge image headers and FIFOs.</summary>
internal static class HostileFiles
{
    /// <summary>
    /// Writes a valid 1-bit grey PNG whose header says <paramref name="width"/> × <paramref name="height"/>; its data holds
    /// <paramref name="rows"/> rows of zeros (all rows when null), so the file stays small whatever the size it claims.
    /// </summary>
    public static string WritePng(string folder, string name, int width, int height, int? rows = null)
    {
        using var file = new MemoryStream();
        file.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 1;   // bit depth 1, colour type 0 (grey), deflate, adaptive filtering, no interlace
        WriteChunk(file, "IHDR", header);
        using (var data = new MemoryStream())
        {
            using (var zlib = new ZLibStream(data, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                var row = new byte[1 + (width + 7) / 8];   // filter byte 0, then the row's bits
                for (int y = 0; y < (rows ?? height); y++)
                    zlib.Write(row);
            }
            WriteChunk(file, "IDAT", data.ToArray());
        }
        WriteChunk(file, "IEND", []);
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, file.ToArray());
        return path;
    }

    /// <summary>Makes a FIFO (named pipe) at <paramref name="folder"/>/<paramref name="name"/>; Unix only.</summary>
    public static string MakeFifo(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        using var process = Process.Start(new ProcessStartInfo("mkfifo") { ArgumentList = { path } })!;
        process.WaitForExit();
        Assert.AreEqual(0, process.ExitCode, "mkfifo failed");
        return path;
    }

    /// <summary>
    /// Runs <paramref name="action"/>, which must throw, and returns what it threw; fails when it is still running after a
    /// minute (a reader blocked on <paramref name="fifo"/> is then released: opening a FIFO for reading and writing never
    /// blocks on Linux and lets a blocked reader open it and read the end of the data).
    /// </summary>
    public static Exception ThrowsWithoutHanging(Action action, string fifo)
    {
        Task task = Task.Run(action);
        if (Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(60))).Result != task)
        {
            using (new FileStream(fifo, FileMode.Open, FileAccess.ReadWrite))
            {
            }
            Assert.Fail($"Reading the FIFO '{fifo}' hung: the call was still running after a minute.");
        }
        Assert.IsTrue(task.IsFaulted, "The call was expected to throw.");
        return task.Exception!.InnerException!;
    }

    private static void WriteChunk(Stream output, string type, byte[] data)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        output.Write(length);
        byte[] typeAndData = [.. Encoding.ASCII.GetBytes(type), .. data];
        output.Write(typeAndData);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(typeAndData));
        output.Write(crc);
    }

    private static uint Crc32(byte[] bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }
}
