using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Configuration;

/// <summary>
/// What `bastion check` can see of the machine beyond the file itself: whether the access log can be written (or
/// its folder created) and whether certificates and keys can be read and belong together, as the user running the
/// check (under systemd, the service's user). Not run on reload: a running gateway handles those itself.
/// </summary>
public static class EnvironmentChecks
{
    public static List<ConfigError> Check(BastionConfig c)
    {
        var errors = new List<ConfigError>();
        if (LogFile(c) is { } log && LogProblem(log) is { } why)
            errors.Add(new ConfigError(c.Logging.Pos, $"logging.access: {why}"));
        foreach (var l in c.Listeners)
            foreach (var t in l.Tls)
                if (CertificateProblem(c.Resolve(t.Cert), c.Resolve(t.Key)) is { } problem)
                    errors.Add(new ConfigError(t.Pos, $"listener '{l.Name}': {problem}"));
        return errors;
    }

    /// <summary>The access log's path when it is a file (not stdout, off or syslog).</summary>
    public static string? LogFile(BastionConfig c) =>
        c.Logging.Access is "stdout" or "-" or "off" or "none" or "syslog" ? null : c.Resolve(c.Logging.Access);

    /// <summary>Why the gateway could not append to PATH (creating its folders as it would), or null.</summary>
    public static string? LogProblem(string path)
    {
        if (Directory.Exists(path)) return $"{path} is a directory";
        if (File.Exists(path)) return Writable(path) ? null : $"{path} is not writable by this user";
        var dir = Path.GetDirectoryName(path);
        var missing = new List<string>();
        while (dir is not null && !Directory.Exists(dir))
        {
            if (File.Exists(dir)) return $"{dir} is a file, not a directory";
            missing.Add(dir);
            dir = Path.GetDirectoryName(dir);
        }
        if (dir is null) return $"no existing directory above {path}";
        if (!Writable(dir)) return missing.Count > 0
            ? $"directory {missing[^1]} does not exist and {dir} is not writable by this user"
            : $"directory {dir} is not writable by this user";
        return null;
    }

    static string? CertificateProblem(string cert, string key)
    {
        foreach (var f in new[] { cert, key })
        {
            try { using var s = File.OpenRead(f); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"cannot read {(f == cert ? "certificate" : "key")} {f}: {Hosting.StartupFault.Describe(e)}";
            }
        }
        try
        {
            using var x = X509Certificate2.CreateFromPemFile(cert, key);
            if (x.NotAfter < DateTime.Now) return $"certificate {cert} expired on {x.NotAfter:yyyy-MM-dd}";
            return null;
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            return $"certificate {cert} with key {key}: {e.Message}";
        }
    }

    const int W_OK = 2, X_OK = 1;

    static bool Writable(string path) => !OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()
        || access(path, Directory.Exists(path) ? W_OK | X_OK : W_OK) == 0;

    // access(2) answers for this process's real user, root included, without creating or touching anything.
    [DllImport("libc", SetLastError = true)]
    static extern int access([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int mode);
}
