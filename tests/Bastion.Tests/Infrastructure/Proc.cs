using System.Diagnostics;
using System.Text;

namespace Bastion.Tests.Infrastructure;

public sealed record ProcResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>Runs real client programs (curl, lftp, swaks, python) with a timeout; kills them past it.</summary>
public static class Proc
{
    public static async Task<ProcResult> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null,
        string? stdin = null, string? workDir = null, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Proxies in the environment must not leak into tests.
        foreach (var v in new[] { "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "no_proxy", "NO_PROXY" })
            psi.Environment.Remove(v);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in time; stderr: {await stderr}");
        }
        return new ProcResult(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>curl with the usual test flags: silent, show errors, no config file, bounded time.</summary>
    public static Task<ProcResult> CurlAsync(params string[] args) =>
        RunAsync("curl", ["-q", "-sS", "--max-time", "30", .. args]);

    /// <summary>The gateway's own executable, built beside the tests.</summary>
    public static string BastionDll => Path.Combine(AppContext.BaseDirectory, "bastion.dll");

    public static Task<ProcResult> BastionAsync(IEnumerable<string> args, string? stdin = null, TimeSpan? timeout = null) =>
        RunAsync("dotnet", [BastionDll, .. args], timeout, stdin);

    /// <summary>Starts a long-running process (a server); the returned handle kills it on dispose.</summary>
    public static BackgroundProcess Start(string file, IEnumerable<string> args, string? workDir = null, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        return new BackgroundProcess(p);
    }
}

public sealed class BackgroundProcess : IAsyncDisposable
{
    readonly StringBuilder _out = new();
    public Process Process { get; }

    public BackgroundProcess(Process p)
    {
        Process = p;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Output
    {
        get { lock (_out) return _out.ToString(); }
    }

    public Task WaitForOutputAsync(string text, TimeSpan timeout) =>
        Wait.UntilAsync(() => Output.Contains(text, StringComparison.Ordinal) || Process.HasExited, timeout, $"'{text}' in output")
            .ContinueWith(t =>
            {
                if (!Output.Contains(text, StringComparison.Ordinal))
                    throw new InvalidOperationException($"process exited before printing '{text}': {Output}");
            }, TaskScheduler.Default);

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                await Process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        Process.Dispose();
    }
}
