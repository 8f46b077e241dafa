using System.Text.RegularExpressions;

namespace Bastion.Tests.Infrastructure;

/// <summary>The real `bastion run` executable in its own process, for what only a process shows (memory, signals).</summary>
public sealed partial class BastionProcess : IAsyncDisposable
{
    public BackgroundProcess Proc { get; }
    public string ConfigPath { get; }
    public int Pid => Proc.Process.Id;

    BastionProcess(BackgroundProcess p, string config)
    {
        Proc = p;
        ConfigPath = config;
    }

    public static async Task<BastionProcess> StartAsync(string yaml, string? dir = null)
    {
        dir ??= Scratch.NewDir("proc");
        var cfg = Path.Combine(dir, "bastion.yaml");
        await File.WriteAllTextAsync(cfg, yaml);
        var p = Infrastructure.Proc.Start("dotnet", [Infrastructure.Proc.BastionDll, "run", "-c", cfg]);
        var bp = new BastionProcess(p, cfg);
        await p.WaitForOutputAsync(" running (", TimeSpan.FromSeconds(30));
        return bp;
    }

    /// <summary>The port a listener bound, from the "listening on" line the gateway prints at start.</summary>
    public int Port(string listener)
    {
        var m = Regex.Match(Proc.Output, $@"listener '{Regex.Escape(listener)}' \([a-z0-9-]+\) listening on [^\s]+:(\d+)");
        if (!m.Success) throw new InvalidOperationException($"no listening line for {listener}: {Proc.Output}");
        return int.Parse(m.Groups[1].Value);
    }

    /// <summary>A field of /proc/PID/status in KiB (VmRSS, VmHWM).</summary>
    public long StatusKiB(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(DigitsRegex().Match(line).Value);
        throw new InvalidOperationException($"no {field} in /proc/{Pid}/status");
    }

    [GeneratedRegex(@"\d+")]
    private static partial Regex DigitsRegex();

    public ValueTask DisposeAsync() => Proc.DisposeAsync();
}
