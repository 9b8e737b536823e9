namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Writes files so that a failed write never destroys the file it replaces: the content goes to a temporary file in the
/// same folder, is flushed to the disk, and only then renamed over the target.
/// </summary>
/// <remarks>
/// A rename within one folder replaces the target in one step (POSIX <c>rename</c>, Windows <c>MoveFileEx</c> with
/// replace), so readers see either the old file or the whole new one. When the disk fills up, the process is killed or
/// the writer throws, the temporary file is removed (or, after a crash, left as <c>.name.*.tmp</c>) and the target is
/// untouched. ML.NET's <c>Model.Save(model, schema, path)</c> writes the zip in place: save models with
/// <see cref="AtomicFileCatalogExtensions.SaveAtomically"/> instead.
/// </remarks>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> with <paramref name="write"/>, replacing any existing file only once the new content is complete.</summary>
    /// <param name="path">The file to write; its folder must exist.</param>
    /// <param name="write">Writes the whole content to the stream it is given (it may close the stream).</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or is a directory.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder of <paramref name="path"/> does not exist.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(write);
        string target = Path.GetFullPath(path);
        if (Directory.Exists(target))
            throw new ArgumentException($"'{path}' is a directory; give the path of the file to write.", nameof(path));
        string folder = Path.GetDirectoryName(target)!;
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"The folder '{folder}' of '{path}' does not exist.");
        string temporary = Path.Combine(folder, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                write(stream);
            // The writer may have closed its stream: flush the file's data to the disk through a handle of our own.
            using (var handle = new FileStream(temporary, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                handle.Flush(flushToDisk: true);
            File.Move(temporary, target, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically (see <see cref="Write(string, Action{Stream})"/>).</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        byte[] copy = bytes.ToArray();
        Write(path, stream => stream.Write(copy));
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 without a byte order mark to <paramref name="path"/> atomically.</summary>
    public static void WriteAllText(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        WriteAllBytes(path, new System.Text.UTF8Encoding(false).GetBytes(text));
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Left for the user: named .<target>.<id>.tmp beside the target.
        }
    }
}

/// <summary>Saving models with <see cref="AtomicFile"/>.</summary>
public static class AtomicFileCatalogExtensions
{
    /// <summary>
    /// Saves <paramref name="model"/> like <c>Model.Save(model, inputSchema, filePath)</c>, but to a temporary file beside
    /// <paramref name="filePath"/> that replaces it only once complete and flushed: a failed save (a full disk, a crash)
    /// leaves the previous model intact.
    /// </summary>
    /// <param name="catalog">The MLContext's model operations (<c>mlContext.Model</c>).</param>
    /// <param name="model">The trained model.</param>
    /// <param name="inputSchema">The schema of the model's input, as for <c>Model.Save</c>.</param>
    /// <param name="filePath">The .zip to write.</param>
    public static void SaveAtomically(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        AtomicFile.Write(filePath, stream => catalog.Save(model, inputSchema, stream));
    }
}
