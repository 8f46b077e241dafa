namespace Bastion.Tests.Infrastructure;

/// <summary>Debian's headless Chromium, as the real browser in end-to-end tests.</summary>
public static class Chromium
{
    public const string Path = "/usr/bin/chromium";

    static IEnumerable<string> BaseArgs(string profile) =>
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", $"--user-data-dir={profile}",
    ];

    /// <summary>Loads a page and returns the DOM after scripts ran.</summary>
    /// <param name="env">For example HOME, whose .pki/nssdb is the certificate store Chromium trusts on Linux.</param>
    public static async Task<ProcResult> DumpDomAsync(string url, IEnumerable<string>? extra = null, int budgetMs = 5000,
        IDictionary<string, string>? env = null)
    {
        var profile = Scratch.NewDir("chr");
        try
        {
            return await Proc.RunAsync(Path, [.. BaseArgs(profile), .. extra ?? [], $"--virtual-time-budget={budgetMs}", "--dump-dom", url],
                TimeSpan.FromSeconds(60), env: env);
        }
        finally
        {
            try { Directory.Delete(profile, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    public static async Task<ProcResult> ScreenshotAsync(string url, string file, IEnumerable<string>? extra = null, string size = "1400,900", int budgetMs = 5000)
    {
        var profile = Scratch.NewDir("chr");
        try
        {
            return await Proc.RunAsync(Path, [.. BaseArgs(profile), .. extra ?? [], $"--virtual-time-budget={budgetMs}", $"--window-size={size}", $"--screenshot={file}", url],
                TimeSpan.FromSeconds(60));
        }
        finally
        {
            try { Directory.Delete(profile, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
