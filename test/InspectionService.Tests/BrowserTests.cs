using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace InspectionService.Tests;

/// <summary>
/// The operator page in a real browser: Debian's chromium driven by its chromedriver (packages chromium and
/// chromium-driver; .ci/run installs them), against the service listening on a loopback port.
/// </summary>
[TestClass]
public sealed class BrowserTests
{
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task ThePageInspectsAnUploadedImageAndShowsScoreVerdictAndOverlay()
    {
        if (!File.Exists(Chromium) || !File.Exists(ChromeDriver))
            Assert.Inconclusive($"{Chromium} and {ChromeDriver} are needed: apt-get install -y chromium chromium-driver (.ci/run installs them).");

        await using var app = InspectionServiceApp.Create(
        [
            "--urls", "http://127.0.0.1:0", "--models", ServiceFixture.NewModelsFolder(), "--data", ServiceFixture.NewFolder(),
            "--Logging:LogLevel:Default=Warning",
        ]);
        await app.StartAsync(TestContext.CancellationToken);
        string url = app.Urls.Single();
        string image = ServiceFixture.TestImages[^1];

        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1300");
        using var driverService = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        driverService.HideCommandPromptWindow = true;
        using var driver = new ChromeDriver(driverService, options, TimeSpan.FromSeconds(60));
        var wait = new WebDriverWait(driver, TimeSpan.FromSeconds(30));

        driver.Navigate().GoToUrl(url);
        wait.Until(d => d.FindElements(By.CssSelector("#model option")).Count == 2);
        wait.Until(d => d.FindElement(By.Id("health")).Text == "healthy");
        driver.FindElement(By.CssSelector("#model option[value='cfa']")).Click();
        IWebElement input = driver.FindElement(By.Id("file"));
        // The input is hidden behind its label ("choose a file"); a browser driver can only type a path into a shown one.
        ((IJavaScriptExecutor)driver).ExecuteScript("arguments[0].hidden = false;", input);
        input.SendKeys(image);

        wait.Until(d => d.FindElement(By.Id("result")).Displayed || d.FindElement(By.Id("error")).Displayed);
        Assert.IsFalse(driver.FindElement(By.Id("error")).Displayed, driver.FindElement(By.Id("error")).Text);
        // The page's score is the service's score, as the history holds it.
        var record = (await new HttpClient().GetFromJsonAsync<JsonElement>($"{url}/api/inspections?limit=1", TestContext.CancellationToken)).EnumerateArray().Single();
        float score = record.GetProperty("score").GetSingle();
        Assert.AreEqual(ServiceFixture.ExpectedScore("cfa", image), score, Math.Abs(score) * 1e-5f);
        Assert.AreEqual(score, float.Parse(driver.FindElement(By.Id("score")).Text, CultureInfo.InvariantCulture), Math.Abs(score) * 1e-4f);
        string verdict = score >= ServiceFixture.Threshold("cfa") ? "ANOMALOUS" : "GOOD";
        Assert.AreEqual(verdict, driver.FindElement(By.Id("verdict")).Text);
        Assert.AreEqual(record.GetProperty("modelVersion").GetString(), driver.FindElement(By.Id("version")).Text);
        var overlay = driver.FindElement(By.Id("overlay"));
        StringAssert.StartsWith(overlay.GetAttribute("src"), "data:image/png;base64,");
        Assert.AreEqual(ServiceFixture.Size, Convert.ToInt32(((IJavaScriptExecutor)driver).ExecuteScript("return arguments[0].naturalWidth;", overlay)),
            "the overlay decoded in the browser at the map's size");
        // The recent inspections list shows it with its thumbnail.
        wait.Until(d => d.FindElements(By.CssSelector($"#history li[data-id='{record.GetProperty("id").GetString()}'] img")).Count == 1);
        wait.Until(d => Convert.ToInt64(((IJavaScriptExecutor)d).ExecuteScript("return document.querySelector('#history img').naturalWidth;")) > 0);

        string screenshot = Path.Combine(ScreenshotFolder(), "inspection-page.png");
        driver.GetScreenshot().SaveAsFile(screenshot);
        TestContext.AddResultFile(screenshot);
        await app.StopAsync(TestContext.CancellationToken);
    }

    /// <summary>artifacts/screenshots at the repository's root (found above the test's folder), else the test's results folder.</summary>
    private string ScreenshotFolder()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "Anomaly.Vision.sln")))
                return Directory.CreateDirectory(Path.Combine(folder.FullName, "artifacts", "screenshots")).FullName;
        }
        return TestContext.TestResultsDirectory ?? Path.GetTempPath();
    }
}
