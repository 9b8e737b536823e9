namespace Microsoft.ML.Anomaly.Vision.Internal;

/// <summary>
/// Saves and loads named binary streams of a model (entries of the model .zip next to the transformer's
/// own stream), turning missing or damaged streams into exceptions that name the stream.
/// </summary>
internal static class ModelStreams
{
    // *** Binary format of a byte blob stream (SaveBytes) ***
    // long: byte count n (0 <= n)
    // byte[n]: the bytes

    /// <summary>Saves <paramref name="bytes"/> (e.g. an ONNX model) as the stream <paramref name="name"/>.</summary>
    public static void SaveBytes(ModelSaveContext ctx, string name, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(bytes);
        ctx.SaveBinaryStream(name, writer =>
        {
            writer.Write((long)bytes.Length);
            writer.Write(bytes);
        });
    }

    /// <summary>Loads the byte blob saved by <see cref="SaveBytes"/> as <paramref name="name"/>.</summary>
    /// <exception cref="InvalidDataException">The stream is missing, truncated or longer than recorded.</exception>
    public static byte[] LoadBytes(ModelLoadContext ctx, string name) =>
        LoadBinary(ctx, name, reader =>
        {
            long length = reader.ReadInt64();
            if (length < 0 || length > Array.MaxLength)
                throw new InvalidDataException($"recorded length {length} is not a valid byte count");
            if (reader.BaseStream.CanSeek && length > reader.BaseStream.Length - reader.BaseStream.Position)
                throw new EndOfStreamException($"{length} bytes are recorded but only {reader.BaseStream.Length - reader.BaseStream.Position} follow");
            byte[] bytes = reader.ReadBytes((int)length);
            if (bytes.Length != length)
                throw new EndOfStreamException($"{length} bytes are recorded but only {bytes.Length} follow");
            return bytes;
        });

    /// <summary>Saves a payload written by <paramref name="write"/> as the stream <paramref name="name"/>.</summary>
    public static void SaveBinary(ModelSaveContext ctx, string name, Action<BinaryWriter> write)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(write);
        ctx.SaveBinaryStream(name, write);
    }

    /// <summary>
    /// Loads the stream <paramref name="name"/> with <paramref name="read"/>, which must consume it entirely.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// The stream is missing, ends early, is not fully consumed, or <paramref name="read"/> rejected it
    /// (<see cref="FormatException"/>, <see cref="InvalidDataException"/>, <see cref="IOException"/>); the message names the stream.
    /// </exception>
    public static T LoadBinary<T>(ModelLoadContext ctx, string name, Func<BinaryReader, T> read)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(read);
        T result = default!;
        bool found;
        try
        {
            found = ctx.TryLoadBinaryStream(name, reader =>
            {
                result = read(reader);
                Stream stream = reader.BaseStream;
                if (stream.CanSeek && stream.Position != stream.Length)
                    throw new InvalidDataException($"{stream.Length - stream.Position} bytes were left unread (written by a different version or another detector)");
            });
        }
        catch (Exception ex) when (ex is EndOfStreamException or FormatException or InvalidDataException or IOException)
        {
            throw new InvalidDataException($"Model stream '{name}' is corrupt: {ex.Message}.", ex);
        }

        if (!found)
            throw new InvalidDataException($"Model stream '{name}' is missing: the model was not saved by this detector or the file is damaged.");
        return result;
    }
}
