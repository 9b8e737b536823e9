using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Temporary folders that name the process owning them, so that the folders of a killed process are found and
/// deleted by the next one, and the folders of a live process never are.
/// </summary>
/// <remarks>
/// A folder is <c>&lt;prefix&gt;&lt;process id&gt;-&lt;process start, Unix ms&gt;-&lt;guid&gt;</c> in the system's temporary
/// folder (<see cref="Path.GetTempPath"/>, <c>$TMPDIR</c> on Linux and macOS). A folder is stale when no process has
/// that id, or the process that has it started at another time (the id was reused). A process whose start time
/// cannot be read (another user's, on some systems) counts as the owner, and folders named otherwise (by earlier
/// versions) are left alone: only a folder known to be orphaned is deleted. Deleting what another user owns fails
/// quietly.
/// </remarks>
internal static class ProcessTempFolder
{
    // Start times read twice may differ by rounding; a reused process id starts far later.
    private const long StartTimeToleranceMs = 2000;

    private static readonly Lazy<long> CurrentStart = new(() => StartMilliseconds(Process.GetCurrentProcess()));

    /// <summary>Creates a new folder named for this process; returns its full path.</summary>
    /// <param name="prefix">The folder name's start, e.g. <c>anomaly-vision-sweep-</c>.</param>
    public static string Create(string prefix)
    {
        string name = string.Create(CultureInfo.InvariantCulture, $"{prefix}{Environment.ProcessId}-{CurrentStart.Value}-{Guid.NewGuid():N}");
        string path = Path.Combine(Path.GetTempPath(), name);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Deletes the folders named <paramref name="prefix"/>… whose owning process is gone; returns how many were deleted.</summary>
    public static int DeleteStale(string prefix)
    {
        int deleted = 0;
        string[] folders;
        try
        {
            folders = Directory.GetDirectories(Path.GetTempPath(), prefix + "*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
        foreach (string folder in folders)
        {
            if (!TryParseOwner(Path.GetFileName(folder).AsSpan(prefix.Length), out int processId, out long start) || IsAlive(processId, start))
                continue;
            try
            {
                Directory.Delete(folder, recursive: true);
                deleted++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another user's folder, or one being deleted by another process.
            }
        }
        return deleted;
    }

    private static bool TryParseOwner(ReadOnlySpan<char> rest, out int processId, out long start)
    {
        processId = 0;
        start = 0;
        int first = rest.IndexOf('-');
        if (first <= 0)
            return false;
        int second = rest[(first + 1)..].IndexOf('-');
        return second > 0
            && int.TryParse(rest[..first], NumberStyles.None, CultureInfo.InvariantCulture, out processId)
            && long.TryParse(rest.Slice(first + 1, second), NumberStyles.None, CultureInfo.InvariantCulture, out start)
            && Guid.TryParseExact(rest[(first + 1 + second + 1)..], "N", out _);
    }

    private static bool IsAlive(int processId, long start)
    {
        Process process;
        try
        {
            process = Process.GetProcessById(processId);
        }
        catch (ArgumentException)
        {
            return false;                                   // no process has that id
        }
        using (process)
        {
            try
            {
                return Math.Abs(StartMilliseconds(process) - start) <= StartTimeToleranceMs;
            }
            catch (InvalidOperationException)
            {
                return false;                               // it exited meanwhile
            }
            catch (Exception e) when (e is Win32Exception or NotSupportedException or UnauthorizedAccessException)
            {
                return true;                                // cannot tell: keep its folders
            }
        }
    }

    private static long StartMilliseconds(Process process) => new DateTimeOffset(process.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds();
}
