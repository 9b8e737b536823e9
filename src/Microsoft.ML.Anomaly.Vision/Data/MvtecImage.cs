namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// One image of an MVTec AD style data set: the row type of the data view that
/// <see cref="MvtecCatalog.LoadMvtecAd"/> returns.
/// </summary>
public sealed class MvtecImage
{
    /// <summary>The full path of the image file.</summary>
    public string ImagePath { get; set; } = string.Empty;

    /// <summary><see langword="true"/> when the image shows a defect (anomalous), <see langword="false"/> when it is good.</summary>
    public bool Label { get; set; }

    /// <summary>The name of the folder the image lies in: <c>"good"</c> for good images, otherwise the defect type (such as <c>"scratch"</c>).</summary>
    public string DefectType { get; set; } = string.Empty;

    /// <summary>The full path of the ground-truth mask (white = defect), or the empty string for good images.</summary>
    public string MaskPath { get; set; } = string.Empty;
}
