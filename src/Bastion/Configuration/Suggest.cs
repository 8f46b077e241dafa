namespace Bastion.Configuration;

/// <summary>"Did you mean": the known word closest to a misspelt one, for keys, names, commands and options.</summary>
public static class Suggest
{
    /// <summary>The closest candidate within a typo's distance (one edit for short words, two for longer), or null.</summary>
    public static string? Closest(string word, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        int limit = word.Length <= 4 ? 1 : 2;
        foreach (var c in candidates)
        {
            if (c.Length == 0 || c == word) continue;
            int d = Distance(word.ToLowerInvariant(), c.ToLowerInvariant());
            if (d <= limit && d < bestDistance)
            {
                best = c;
                bestDistance = d;
            }
        }
        return best;
    }

    /// <summary>" (did you mean 'x'?)" or "".</summary>
    public static string Hint(string word, IEnumerable<string> candidates) =>
        Closest(word, candidates) is { } c ? $" (did you mean '{c}'?)" : "";

    /// <summary>Edit distance counting a swap of two neighbours as one edit (optimal string alignment).</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        }
        return d[a.Length, b.Length];
    }
}
