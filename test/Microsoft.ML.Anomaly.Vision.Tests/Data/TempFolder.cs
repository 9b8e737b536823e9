namespace Microsoft.ML.Anomaly.Vision.Tests;

/// <summary>A fresh folder under the test run's folder, deleted on dispose (for tests that write much data).</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = TestSupport.TestImages.NewDirectory();
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
