using System.Security.Cryptography;
using System.Text;

namespace Bastion.Identity;

/// <summary>htpasswd files: `user:hash` lines with bcrypt ($2a$/$2b$/$2y$) or {SHA} hashes.</summary>
public static class Htpasswd
{
    public static Dictionary<string, string> Read(string path, List<string> problems)
    {
        var users = new Dictionary<string, string>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int colon = line.IndexOf(':');
            if (colon <= 0)
            {
                problems.Add($"line {lineNo}: expected user:hash");
                continue;
            }
            var hash = line[(colon + 1)..];
            if (!IsSupported(hash))
            {
                problems.Add($"line {lineNo}: user '{line[..colon]}' has an unsupported hash (use bcrypt: bastion passwd, or htpasswd -B)");
                continue;
            }
            if (!IsWellFormed(hash))
            {
                problems.Add($"line {lineNo}: user '{line[..colon]}' has a malformed hash");
                continue;
            }
            users[line[..colon]] = hash;
        }
        return users;
    }

    public static bool IsSupported(string hash) =>
        hash.StartsWith("$2a$", StringComparison.Ordinal) || hash.StartsWith("$2b$", StringComparison.Ordinal)
        || hash.StartsWith("$2y$", StringComparison.Ordinal) || hash.StartsWith("{SHA}", StringComparison.Ordinal);

    // Checked at load, so that a damaged line is a config error rather than a failure at login time.
    static readonly System.Text.RegularExpressions.Regex Bcrypt = new(@"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$");

    public static bool IsWellFormed(string hash)
    {
        if (hash.StartsWith("{SHA}", StringComparison.Ordinal))
        {
            Span<byte> digest = stackalloc byte[32];
            return Convert.TryFromBase64String(hash[5..], digest, out int n) && n == 20;
        }
        return Bcrypt.IsMatch(hash);
    }

    /// <summary>Checks a password against a stored hash. bcrypt is deliberately slow (~100 ms at cost 10).</summary>
    public static bool Verify(string password, string hash)
    {
        if (hash.StartsWith("{SHA}", StringComparison.Ordinal))
        {
            var digest = Convert.ToBase64String(SHA1.HashData(Encoding.UTF8.GetBytes(password)));
            return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(digest), Encoding.ASCII.GetBytes(hash[5..]));
        }
        try
        {
            // BCrypt.Net handles $2a$/$2b$/$2y$ alike.
            return BCrypt.Net.BCrypt.Verify(password, hash);
        }
        catch (Exception e) when (e is BCrypt.Net.SaltParseException or BCrypt.Net.HashInformationException or ArgumentException or FormatException)
        {
            return false;
        }
    }

    public static string HashBcrypt(string password, int cost = 10) =>
        BCrypt.Net.BCrypt.HashPassword(password, cost);

    /// <summary>Adds or replaces a user, keeping the other lines (and their order) as they are.</summary>
    public static void Upsert(string path, string user, string hash)
    {
        var lines = File.Exists(path) ? File.ReadAllLines(path).ToList() : [];
        int idx = lines.FindIndex(l => l.StartsWith(user + ":", StringComparison.Ordinal));
        var entry = $"{user}:{hash}";
        if (idx >= 0) lines[idx] = entry;
        else lines.Add(entry);
        var tmp = path + ".tmp";
        File.WriteAllLines(tmp, lines);
        File.Move(tmp, path, overwrite: true);
    }
}
