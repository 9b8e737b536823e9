using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using SkiaSharp;

namespace InspectionService.Tests;

/// <summary>Every endpoint against one service over cfa and dfm, and every kind of bad input.</summary>
[TestClass]
public sealed class ServiceEndpointTests
{
    private const long UploadLimit = 300_000;
    private const long PixelLimit = 200_000;

    private static WebApplicationFactory<Program> _service = null!;
    private static HttpClient _client = null!;
    private static string _data = null!;

    [ClassInitialize]
    public static void Start(TestContext context)
    {
        _data = ServiceFixture.NewFolder();
        _service = ServiceFixture.NewService(ServiceFixture.NewModelsFolder(), _data,
            ("MaxUploadBytes", UploadLimit.ToString()), ("MaxImagePixels", PixelLimit.ToString()));
        _client = _service.CreateClient();
    }

    [ClassCleanup]
    public static void Stop()
    {
        _client?.Dispose();
        _service?.Dispose();
    }

    [TestMethod]
    public async Task HealthIsOkWhenEveryModelLoaded()
    {
        var response = await _client.GetAsync("/health");
        Assert.AreEqual(HttpStatusCode.OK, response.StatusCode);
        var health = await ServiceFixture.JsonAsync(response);
        Assert.AreEqual("healthy", health.GetProperty("status").GetString());
        CollectionAssert.AreEqual(new[] { "cfa", "dfm" }, health.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToArray());
        Assert.AreEqual(0, health.GetProperty("failed").GetArrayLength());
    }

    [TestMethod]
    public async Task ModelsShowAlgorithmVersionSizeThresholdAndBackbone()
    {
        var models = (await _client.GetFromJsonAsync<JsonElement>("/api/models")).EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!);
        Assert.HasCount(2, models);
        foreach (var (name, algorithm, source) in new[] { ("cfa", "cfa", "model"), ("dfm", "dfm", "file") })
        {
            JsonElement model = models[name];
            Assert.AreEqual(algorithm, model.GetProperty("algorithm").GetString());
            Assert.AreEqual(ServiceFixture.Version(name), model.GetProperty("version").GetString());
            Assert.AreEqual(ServiceFixture.Size, model.GetProperty("inputHeight").GetInt32());
            Assert.AreEqual(ServiceFixture.Size, model.GetProperty("inputWidth").GetInt32());
            Assert.AreEqual(ServiceFixture.Threshold(name), model.GetProperty("threshold").GetSingle());
            Assert.AreEqual(source, model.GetProperty("thresholdSource").GetString());
            StringAssert.Contains(model.GetProperty("backbone").GetString(), "UNTRAINED");
        }
    }

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm")]
    public async Task InspectReturnsTheDetectorsOwnScoreVersionAndVerdict(string model)
    {
        foreach (string image in ServiceFixture.TestImages)
        {
            var response = await ServiceFixture.PostImageAsync(_client, model, File.ReadAllBytes(image), Path.GetFileName(image));
            Assert.AreEqual(HttpStatusCode.OK, response.StatusCode, await response.Content.ReadAsStringAsync());
            var body = await ServiceFixture.JsonAsync(response);
            float expected = ServiceFixture.ExpectedScore(model, image);
            Assert.AreEqual(expected, body.GetProperty("score").GetSingle(), Math.Abs(expected) * 1e-5f, image);
            Assert.AreEqual(model, body.GetProperty("model").GetString());
            Assert.AreEqual(ServiceFixture.Version(model), body.GetProperty("modelVersion").GetString());
            Assert.AreEqual(ServiceFixture.Threshold(model), body.GetProperty("threshold").GetSingle());
            Assert.AreEqual(expected >= ServiceFixture.Threshold(model), body.GetProperty("isAnomalous").GetBoolean(), image);
            Assert.IsFalse(body.TryGetProperty("overlayPng", out _), "the overlay comes only with ?map=true");
        }
    }

    [TestMethod]
    public async Task InspectWithMapAddsAPngOverlayOfTheMapsSize()
    {
        string image = ServiceFixture.TestImages[^1];
        var response = await ServiceFixture.PostImageAsync(_client, "cfa", File.ReadAllBytes(image), query: "?map=true");
        Assert.AreEqual(HttpStatusCode.OK, response.StatusCode);
        byte[] png = Convert.FromBase64String((await ServiceFixture.JsonAsync(response)).GetProperty("overlayPng").GetString()!);
        using var overlay = SKBitmap.Decode(png);
        Assert.AreEqual(ServiceFixture.Size, overlay.Width);
        Assert.AreEqual(ServiceFixture.Size, overlay.Height);
    }

    [TestMethod]
    public async Task TheHistoryHoldsEachInspectionWithItsImageAndOverlay()
    {
        string image = ServiceFixture.TestImages[0];
        byte[] bytes = File.ReadAllBytes(image);
        var inspected = await ServiceFixture.JsonAsync(await ServiceFixture.PostImageAsync(_client, "dfm", bytes, "line-7.png"));
        string id = inspected.GetProperty("id").GetString()!;

        var latest = (await _client.GetFromJsonAsync<JsonElement>("/api/inspections?limit=1")).EnumerateArray().Single();
        Assert.AreEqual(id, latest.GetProperty("id").GetString());
        var record = await _client.GetFromJsonAsync<JsonElement>($"/api/inspections/{id}");
        Assert.AreEqual("dfm", record.GetProperty("model").GetString());
        Assert.AreEqual(ServiceFixture.Version("dfm"), record.GetProperty("modelVersion").GetString());
        Assert.AreEqual(inspected.GetProperty("score").GetSingle(), record.GetProperty("score").GetSingle());
        Assert.AreEqual(inspected.GetProperty("isAnomalous").GetBoolean(), record.GetProperty("isAnomalous").GetBoolean());
        Assert.AreEqual("line-7.png", record.GetProperty("fileName").GetString());
        Assert.AreEqual(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), record.GetProperty("imageSha256").GetString());

        CollectionAssert.AreEqual(bytes, await _client.GetByteArrayAsync($"/api/inspections/{id}/image"));
        var overlay = await _client.GetAsync($"/api/inspections/{id}/overlay.png");
        Assert.AreEqual("image/png", overlay.Content.Headers.ContentType?.MediaType);
        using var decoded = SKBitmap.Decode(await overlay.Content.ReadAsByteArrayAsync());
        Assert.AreEqual(ServiceFixture.Size, decoded.Width);

        await AssertProblemAsync(await _client.GetAsync("/api/inspections/no-such-id"), HttpStatusCode.NotFound, "no-such-id");
        await AssertProblemAsync(await _client.GetAsync("/api/inspections?limit=0"), HttpStatusCode.BadRequest, "limit");
        await AssertProblemAsync(await _client.GetAsync("/api/inspections?limit=many"), HttpStatusCode.BadRequest, "'many'");
    }

    [TestMethod]
    [DataRow("not an image", 415, "not an image")]
    [DataRow("truncated", 400, "truncated")]
    [DataRow("empty", 400, "empty (0 bytes)")]
    [DataRow("gif", 415, "Gif")]
    [DataRow("over the size limit", 413, "300000 bytes")]
    [DataRow("over the pixel limit", 413, "200000")]
    [DataRow("unknown model", 404, "'nope'")]
    [DataRow("missing field", 400, "'image'")]
    [DataRow("not a form", 415, "multipart/form-data")]
    public async Task BadInputIsAProblemThatNamesItAndStoresNothing(string input, int status, string named)
    {
        byte[] png = File.ReadAllBytes(ServiceFixture.TestImages[0]);
        int before = (await _client.GetFromJsonAsync<JsonElement>("/api/inspections?limit=500")).GetArrayLength();
        string[] filesBefore = Directory.GetFiles(_data, "*", SearchOption.AllDirectories).Where(f => !f.Contains("inspections.db")).ToArray();

        HttpResponseMessage response = input switch
        {
            "not an image" => await ServiceFixture.PostImageAsync(_client, "cfa", "hello, this is text"u8.ToArray(), "notes.txt"),
            "truncated" => await ServiceFixture.PostImageAsync(_client, "cfa", png[..(png.Length * 2 / 3)]),
            "empty" => await ServiceFixture.PostImageAsync(_client, "cfa", []),
            "gif" => await ServiceFixture.PostImageAsync(_client, "cfa", TestImages.Gif, "part.gif"),
            "over the size limit" => await ServiceFixture.PostImageAsync(_client, "cfa", new byte[UploadLimit + 1]),
            "over the pixel limit" => await ServiceFixture.PostImageAsync(_client, "cfa", TestImages.Encode(500, 401)),
            "unknown model" => await ServiceFixture.PostImageAsync(_client, "nope", png),
            "missing field" => await ServiceFixture.PostImageAsync(_client, "cfa", png, field: "picture"),
            "not a form" => await _client.PostAsync("/api/inspect/cfa", new ByteArrayContent(png)),
            _ => throw new ArgumentOutOfRangeException(nameof(input)),
        };

        await AssertProblemAsync(response, (HttpStatusCode)status, named);
        StringAssert.DoesNotMatch(await response.Content.ReadAsStringAsync(), new System.Text.RegularExpressions.Regex(System.Text.RegularExpressions.Regex.Escape(_data)),
            "the problem is refused before anything is stored: the answer names no server path");
        Assert.AreEqual(before, (await _client.GetFromJsonAsync<JsonElement>("/api/inspections?limit=500")).GetArrayLength(), "no history record");
        CollectionAssert.AreEquivalent(filesBefore, Directory.GetFiles(_data, "*", SearchOption.AllDirectories).Where(f => !f.Contains("inspections.db")).ToArray(), "no file");
    }

    [TestMethod]
    public async Task AJpegAndABmpAreInspectedLikeAPng()
    {
        foreach (var (bytes, name) in new[] { (TestImages.Encode(80, 60, SKEncodedImageFormat.Jpeg), "part.jpg"), (TestImages.Bmp(80, 60), "part.bmp") })
        {
            var response = await ServiceFixture.PostImageAsync(_client, "dfm", bytes, name);
            Assert.AreEqual(HttpStatusCode.OK, response.StatusCode, await response.Content.ReadAsStringAsync());
            string id = (await ServiceFixture.JsonAsync(response)).GetProperty("id").GetString()!;
            CollectionAssert.AreEqual(bytes, await _client.GetByteArrayAsync($"/api/inspections/{id}/image"), name);
        }
    }

    [TestMethod]
    public async Task MetricsCountInspectionsByModelForPrometheus()
    {
        await ServiceFixture.PostImageAsync(_client, "cfa", File.ReadAllBytes(ServiceFixture.TestImages[0]));
        await ServiceFixture.PostImageAsync(_client, "nope", File.ReadAllBytes(ServiceFixture.TestImages[0]));
        string metrics = "";
        // The exporter caches a scrape for a moment; the counts appear at the latest after it.
        for (int attempt = 0; attempt < 50 && !metrics.Contains("outcome=\"refused\""); attempt++)
        {
            await Task.Delay(100);
            metrics = await _client.GetStringAsync("/metrics");
        }
        StringAssert.Matches(metrics, new System.Text.RegularExpressions.Regex("inspection_requests_total\\{[^}]*model=\"cfa\",outcome=\"scored\"\\} [1-9]"));
        StringAssert.Matches(metrics, new System.Text.RegularExpressions.Regex("inspection_requests_total\\{[^}]*model=\"nope\",outcome=\"refused\"\\} [1-9]"));
        StringAssert.Contains(metrics, "inspection_duration_seconds_bucket{");
        StringAssert.Contains(metrics, "inspection_queue_length{");
    }

    [TestMethod]
    public async Task ThePageIsServedAtTheRoot()
    {
        string page = await _client.GetStringAsync("/");
        StringAssert.Contains(page, "<script src=\"app.js\">");
        StringAssert.Contains(await _client.GetStringAsync("/app.js"), "/api/inspect/");
    }

    internal static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string named)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.AreEqual(status, response.StatusCode, body);
        Assert.AreEqual("application/problem+json", response.Content.Headers.ContentType?.MediaType, body);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.AreEqual((int)status, problem.GetProperty("status").GetInt32());
        StringAssert.Contains(problem.GetProperty("detail").GetString(), named, body);
    }
}
