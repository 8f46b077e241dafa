namespace Bastion.Tests.Infrastructure;

/// <summary>
/// Runs a command as an unprivileged user when the tests run as root (CI does), so that file permissions mean
/// what they mean for a service user: root may write anywhere.
/// </summary>
public static class Unprivileged
{
    public static bool IsRoot => Environment.UserName == "root";

    /// <summary>`bastion ARGS` as user nobody (setpriv) when root, else as the current user.</summary>
    public static Task<ProcResult> BastionAsync(params string[] args) => IsRoot
        ? Proc.RunAsync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", ReadableDll.Value, .. args])
        : Proc.BastionAsync(args);

    // A checkout may sit under a folder other users cannot enter (a clone in `mktemp -d` is 0700): nobody runs
    // a copy of the build output in a world-readable folder instead.
    static readonly Lazy<string> ReadableDll = new(() =>
    {
        var dir = Scratch.NewDir("bin");
        foreach (var file in Directory.EnumerateFiles(AppContext.BaseDirectory))
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        return Path.Combine(dir, "bastion.dll");
    });
}
